-- Claim up to `limit` ready jobs in one statement: the inner SELECT walks the
-- partial index dqflow_jobs_ready in claim order and skips rows other workers
-- hold; each claimed job gets a new lease token and a `processing` event, and
-- starts its attempt without the output and progress of an earlier one.
--
-- Flow control (docs/FLOW_CONTROL.md): a candidate whose concurrency key's slots are
-- all taken, or whose rate key's window is full, is passed over (so it does not hold
-- back other keys' jobs). Rate-limited candidates then take starts of their window,
-- and keyed candidates take slots with a row-locked UPDATE of dqflow_concurrency_slots,
-- in key order: a concurrent claim that raised a key's count first is waited for and
-- its count re-read (READ COMMITTED re-checks an updated row), so no key ever has more
-- than its limit processing (or started in a window); a candidate that got no slot or
-- start stays pending. A batch of plain jobs has no limited candidates: those steps
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
rate_locks AS (
    SELECT w.key
    FROM dqflow_rate_windows AS w JOIN rate_wanted ON rate_wanted.key = w.key
    ORDER BY w.key
    FOR UPDATE OF w
),
rate_granted AS (
    -- a window that has ended starts again at 0; the new one ends at the next multiple of
    -- window_ms since the epoch
    UPDATE dqflow_rate_windows AS w
    SET window_end = CASE WHEN w.window_end > now() THEN w.window_end
                          ELSE to_timestamp((floor(extract(epoch FROM now()) * 1000 / rate_wanted.window_ms) + 1)
                                            * rate_wanted.window_ms / 1000.0) END,
        starts = least(rate_wanted.lim, CASE WHEN w.window_end > now() THEN w.starts ELSE 0 END + rate_wanted.n),
        granted = least(rate_wanted.lim, CASE WHEN w.window_end > now() THEN w.starts ELSE 0 END + rate_wanted.n)
                  - CASE WHEN w.window_end > now() THEN w.starts ELSE 0 END
    FROM rate_wanted JOIN rate_locks ON rate_locks.key = rate_wanted.key
    WHERE w.key = rate_wanted.key AND (w.window_end <= now() OR w.starts < rate_wanted.lim)
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
slot_locks AS (
    -- in key order, so two claims (or a claim and a completion) cannot deadlock
    SELECT s.key
    FROM dqflow_concurrency_slots AS s JOIN wanted ON wanted.key = s.key
    ORDER BY s.key
    FOR UPDATE OF s
),
granted AS (
    UPDATE dqflow_concurrency_slots AS s
    SET active = least(wanted.lim, s.active + wanted.n),
        granted = least(wanted.lim, s.active + wanted.n) - s.active
    FROM wanted JOIN slot_locks ON slot_locks.key = wanted.key
    WHERE s.key = wanted.key AND s.active < wanted.lim
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
