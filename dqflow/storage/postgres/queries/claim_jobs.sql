-- Claim up to `limit` ready jobs in one statement: the inner SELECT walks the
-- partial index dqflow_jobs_ready in claim order and skips rows other workers
-- hold; each claimed job gets a new lease token and a `processing` event, and
-- starts its attempt without the output and progress of an earlier one.
--
-- This transaction (only this one) commits without waiting for the WAL flush
-- (synchronous_commit off, set for the transaction): a claim lost in a server
-- crash leaves the job pending again, and the worker's completion is then
-- rejected by the fence, so nothing is lost or completed twice; and every
-- durable completion flushes the WAL up to and including its own claim.
-- The new token adds a random step, so a claim repeated after such a crash gets
-- a different token than the lost one and the first worker stays fenced out.
WITH claimed AS (
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
    WHERE j.id IN (
        SELECT id
        FROM dqflow_jobs
        WHERE status = 'pending'
          AND run_at <= now()
          AND (%(job_types)s::text[] IS NULL OR job_type = ANY(%(job_types)s::text[]))
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s::integer
        FOR UPDATE SKIP LOCKED
    )
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
