-- Settle Wait outcomes: fenced on status and lease token, each job becomes `waiting`
-- with its wait (%(wait)s, JSON text) and wake time (%(wake_at)s, NULL: until its token
-- comes), the attempt refunded, the lease cleared and the token bumped; a `waiting`
-- event; idle workers woken so they look at the next due time again. Answers the ids
-- that applied. wait_ready.sql then runs in the same transaction. A waiting job holds no
-- concurrency slot: its slot is given back (free_slots.sql), a wake-up claims one again.
WITH waiting AS (
    UPDATE dqflow_jobs AS j
    SET status = 'waiting',
        wait = ((%(wait)s::text[])[array_position(%(job_id)s::bigint[], j.id)])::jsonb,
        wake_at = (%(wake_at)s::timestamptz[])[array_position(%(job_id)s::bigint[], j.id)],
        attempts = greatest(j.attempts - 1, 0),
        locked_by = NULL,
        locked_at = NULL,
        lease_expires_at = NULL,
        lease_token = j.lease_token + 1,
        updated_at = now()
    WHERE j.id = ANY(%(job_id)s::bigint[])
      AND j.status = 'processing'
      AND j.lease_token = (%(lease_token)s::bigint[])[array_position(%(job_id)s::bigint[], j.id)]
    RETURNING j.id, j.job_type, j.wait, j.concurrency_key
),
left_processing AS (
    SELECT concurrency_key AS key, job_type FROM waiting
),
$FREE_SLOTS,
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'waiting', now(), wait FROM waiting
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM waiting) AS types
)
SELECT id FROM waiting CROSS JOIN woken CROSS JOIN slots_woken
