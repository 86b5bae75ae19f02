-- Claim up to `limit` ready jobs in one statement: the inner SELECT walks the
-- partial index dqflow_jobs_ready in claim order and skips rows other workers
-- hold; each claimed job gets a new lease token and a `processing` event, and
-- starts its attempt without the output and progress of an earlier one.
--
-- Flow control (docs/FLOW_CONTROL.md): a candidate whose concurrency key's slots are
-- all taken, or whose rate key's window is full, is passed over (so it does not hold
-- back other keys' jobs). Rate-limited candidates then take starts of their window,
-- and keyed candidates take slots, each with an upsert of the key's row in key order: a
-- concurrent claim that raised a key's count first is waited for and its count re-read
-- (ON CONFLICT DO UPDATE acts on the latest row version), so no key ever has more than
-- its limit processing (or started in a window); a candidate that got no slot or start
-- stays pending. A missing row counts as free: rows are created by the claim and pruned
-- when idle (prune_flow_control.sql). A batch of plain jobs has no limited candidates: those steps
-- run on empty sets.
--
-- This transaction (only this one) commits without waiting for the WAL flush
-- (synchronous_commit off, set for the transaction): a claim lost in a server
-- crash leaves the job pending again, and the worker's completion is then
-- rejected by the fence, so nothing is lost or completed twice; and every
-- durable completion flushes the WAL up to and including its own claim.
-- The new token adds a random step, so a claim repeated after such a crash gets
-- a different token than the lost one and the first worker stays fenced out.
WITH candidates AS (
    SELECT id, concurrency_key, concurrency_limit, rate_key, rate_limit, rate_window_ms, priority, run_at
    FROM dqflow_jobs AS c
    WHERE status = 'pending'
      AND run_at <= now()
      AND (%(job_types)s::text[] IS NULL OR job_type = ANY(%(job_types)s::text[]))
      AND (c.concurrency_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM dqflow_concurrency_slots AS full_slot
          WHERE full_slot.key = c.concurrency_key AND full_slot.active >= c.concurrency_limit))
      AND (c.rate_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM dqflow_rate_windows AS full_window
          WHERE full_window.key = c.rate_key AND full_window.window_end > now()
            AND full_window.starts >= c.rate_limit))
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s::integer
    FOR UPDATE SKIP LOCKED
),
-- the candidates a concurrency slot looks free for (as this statement's snapshot sees the
-- slots): only these ask for rate starts
hopeful AS (
    SELECT ranked.*
    FROM (
        SELECT candidates.*,
               row_number() OVER (PARTITION BY concurrency_key ORDER BY priority DESC, run_at, id) AS key_nth
        FROM candidates
    ) AS ranked
    LEFT JOIN dqflow_concurrency_slots AS seen ON seen.key = ranked.concurrency_key
    WHERE ranked.concurrency_key IS NULL OR ranked.key_nth <= ranked.concurrency_limit - coalesce(seen.active, 0)
),
-- rate limits first: a start counted for a job that then gets no concurrency slot (a
-- concurrent claim took it meanwhile) only lowers the rate, never raises a count past its limit
rate_wanted AS (
    SELECT rate_key AS key, min(rate_limit) AS lim, min(rate_window_ms) AS window_ms, count(*) AS n
    FROM hopeful
    WHERE rate_key IS NOT NULL
    GROUP BY rate_key
),
rate_granted AS (
    -- a window that has ended starts again at 0; the new one ends at the next multiple of
    -- window_ms since the epoch. A key with no row (its first start, or its row pruned once
    -- its window ended: Storage.prune_flow_control) gets one here. Rows are written in key
    -- order; a row a concurrent claim wrote first is waited for and its latest version
    -- re-read (ON CONFLICT DO UPDATE acts on the latest version), a row deleted meanwhile
    -- is inserted afresh.
    -- A start counts in the window of its job's started_at (this statement's now()), so a
    -- claim whose window has ended by the clock when it writes (clock_timestamp(): it began
    -- just before a window boundary, then waited) takes no start; its jobs stay pending for
    -- the next claim. This also keeps a window pruned after this claim began from being
    -- started afresh: the pruner deletes only windows ended before it took its table lock,
    -- which this claim waited for.
    INSERT INTO dqflow_rate_windows AS w (key, window_end, starts, granted)
    SELECT key, fresh_end, least(lim, n), least(lim, n)
    FROM (
        SELECT key, lim, n,
               to_timestamp((floor(extract(epoch FROM now()) * 1000 / window_ms) + 1) * window_ms / 1000.0)
                   AS fresh_end
        FROM rate_wanted
    ) AS fresh
    WHERE fresh_end > clock_timestamp()
    ORDER BY key
    ON CONFLICT (key) DO UPDATE
    SET window_end = CASE WHEN w.window_end > now() THEN w.window_end ELSE excluded.window_end END,
        starts = CASE WHEN w.window_end > now()
                      THEN least((SELECT lim FROM rate_wanted AS r WHERE r.key = w.key),
                                 w.starts + (SELECT n FROM rate_wanted AS r WHERE r.key = w.key))
                      ELSE excluded.starts END,
        granted = CASE WHEN w.window_end > now()
                       THEN least((SELECT lim FROM rate_wanted AS r WHERE r.key = w.key),
                                  w.starts + (SELECT n FROM rate_wanted AS r WHERE r.key = w.key)) - w.starts
                       ELSE excluded.granted END
    WHERE excluded.window_end > clock_timestamp()
      AND (w.window_end <= now() OR w.starts < (SELECT lim FROM rate_wanted AS r WHERE r.key = w.key))
    RETURNING w.key, w.granted
),
rate_ranked AS (
    SELECT id, rate_key,
           row_number() OVER (PARTITION BY rate_key ORDER BY priority DESC, run_at, id) AS nth
    FROM hopeful
    WHERE rate_key IS NOT NULL
),
admitted AS (
    SELECT id, concurrency_key, concurrency_limit, priority, run_at FROM hopeful WHERE rate_key IS NULL
    UNION ALL
    SELECT hopeful.id, hopeful.concurrency_key, hopeful.concurrency_limit, hopeful.priority, hopeful.run_at
    FROM hopeful
    JOIN rate_ranked ON rate_ranked.id = hopeful.id
    JOIN rate_granted ON rate_granted.key = rate_ranked.rate_key
    WHERE rate_ranked.nth <= rate_granted.granted
),
keyed AS (
    SELECT id, concurrency_key,
           row_number() OVER (PARTITION BY concurrency_key ORDER BY priority DESC, run_at, id) AS nth
    FROM admitted
    WHERE concurrency_key IS NOT NULL
),
wanted AS (
    SELECT concurrency_key AS key, min(concurrency_limit) AS lim, count(*) AS n
    FROM admitted
    WHERE concurrency_key IS NOT NULL
    GROUP BY concurrency_key
),
granted AS (
    -- a key with no row (its first job, or its row pruned while no job held a slot:
    -- Storage.prune_flow_control) gets one here. Rows are written in key order (as
    -- free_slots.sql locks them), so two claims, or a claim and a completion, cannot
    -- deadlock; a row a concurrent claim raised first is waited for and its latest count
    -- re-checked (ON CONFLICT DO UPDATE acts on the latest version), a row deleted
    -- meanwhile is inserted afresh.
    INSERT INTO dqflow_concurrency_slots AS s (key, active, granted)
    SELECT key, least(lim, n), least(lim, n) FROM wanted ORDER BY key
    ON CONFLICT (key) DO UPDATE
    SET active = least((SELECT lim FROM wanted AS x WHERE x.key = s.key),
                       s.active + (SELECT n FROM wanted AS x WHERE x.key = s.key)),
        granted = least((SELECT lim FROM wanted AS x WHERE x.key = s.key),
                        s.active + (SELECT n FROM wanted AS x WHERE x.key = s.key)) - s.active
    WHERE s.active < (SELECT lim FROM wanted AS x WHERE x.key = s.key)
    RETURNING s.key, s.granted
),
chosen AS (
    SELECT id FROM admitted WHERE concurrency_key IS NULL
    UNION ALL
    SELECT keyed.id FROM keyed JOIN granted ON granted.key = keyed.concurrency_key WHERE keyed.nth <= granted.granted
),
claimed AS (
    UPDATE dqflow_jobs AS j
    SET status = 'processing',
        attempts = j.attempts + 1,
        output = NULL,
        progress = NULL,
        lease_token = j.lease_token + 1 + floor(random() * 2147483647)::bigint,
        locked_by = %(worker_id)s::text,
        locked_at = now(),
        lease_expires_at = now() + %(lease_ms)s::bigint * interval '1 millisecond',
        started_at = now(),
        updated_at = now()
    WHERE j.id IN (SELECT id FROM chosen)
    RETURNING j.*
),
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'processing', now(), jsonb_build_object('worker_id', locked_by, 'attempt', attempts)
    FROM claimed
)
SELECT claimed.*
FROM claimed CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
ORDER BY priority DESC, run_at, id
