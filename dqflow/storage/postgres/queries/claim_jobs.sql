-- Claim up to `limit` ready jobs in one statement: the inner SELECT walks the
-- partial index dqflow_jobs_ready in claim order and skips rows other workers
-- hold; each claimed job gets a new lease token and a `processing` event, and
-- starts its attempt without the output and progress of an earlier one.
--
-- Concurrency keys (docs/FLOW_CONTROL.md): a candidate whose key's slots are all
-- taken is passed over (so it does not hold back other keys' jobs). The keyed
-- candidates then take slots with a row-locked UPDATE of dqflow_concurrency_slots,
-- in key order: a concurrent claim that raised a key's count first is waited for and
-- its count re-read (READ COMMITTED re-checks an updated row), so no key ever has more
-- than its limit processing; a keyed candidate that got no slot stays pending. A
-- batch of plain jobs has no keyed candidates: those steps run on empty sets.
--
-- This transaction (only this one) commits without waiting for the WAL flush
-- (synchronous_commit off, set for the transaction): a claim lost in a server
-- crash leaves the job pending again, and the worker's completion is then
-- rejected by the fence, so nothing is lost or completed twice; and every
-- durable completion flushes the WAL up to and including its own claim.
-- The new token adds a random step, so a claim repeated after such a crash gets
-- a different token than the lost one and the first worker stays fenced out.
WITH candidates AS (
    SELECT id, concurrency_key, concurrency_limit, priority, run_at
    FROM dqflow_jobs AS c
    WHERE status = 'pending'
      AND run_at <= now()
      AND (%(job_types)s::text[] IS NULL OR job_type = ANY(%(job_types)s::text[]))
      AND (c.concurrency_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM dqflow_concurrency_slots AS full_slot
          WHERE full_slot.key = c.concurrency_key AND full_slot.active >= c.concurrency_limit))
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s::integer
    FOR UPDATE SKIP LOCKED
),
keyed AS (
    SELECT id, concurrency_key,
           row_number() OVER (PARTITION BY concurrency_key ORDER BY priority DESC, run_at, id) AS nth
    FROM candidates
    WHERE concurrency_key IS NOT NULL
),
wanted AS (
    SELECT candidates.concurrency_key AS key, min(candidates.concurrency_limit) AS lim, count(*) AS n
    FROM candidates
    WHERE candidates.concurrency_key IS NOT NULL
    GROUP BY candidates.concurrency_key
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
    SELECT id FROM candidates WHERE concurrency_key IS NULL
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
