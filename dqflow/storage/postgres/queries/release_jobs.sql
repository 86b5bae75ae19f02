-- Hand claimed jobs back to pending, fenced on status and lease token: a started
-- job is runnable now; one whose handler never started gets its attempt refunded
-- and keeps its place in line (its run_at).
-- The token bump fences off the releasing worker. Answers the ids that applied.
-- The jobs' concurrency slots are given back (free_slots.sql).
-- Addressed by primary key; each job's values sit at its position in the arrays.
WITH released AS (
    UPDATE dqflow_jobs AS j
    SET status = 'pending',
        run_at = CASE
            WHEN (%(started)s::boolean[])[array_position(%(job_id)s::bigint[], j.id)] THEN now()
            ELSE j.run_at
        END,
        attempts = CASE
            WHEN (%(started)s::boolean[])[array_position(%(job_id)s::bigint[], j.id)] THEN j.attempts
            ELSE greatest(j.attempts - 1, 0)
        END,
        locked_by = NULL,
        locked_at = NULL,
        lease_expires_at = NULL,
        lease_token = j.lease_token + 1,
        updated_at = now()
    WHERE j.id = ANY(%(job_id)s::bigint[])
      AND j.status = 'processing'
      AND j.lease_token = (%(lease_token)s::bigint[])[array_position(%(job_id)s::bigint[], j.id)]
    RETURNING j.id, j.job_type, j.concurrency_key
),
left_processing AS (
    SELECT concurrency_key AS key, job_type FROM released
),
$FREE_SLOTS,
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM released) AS types
)
SELECT id FROM released CROSS JOIN woken CROSS JOIN slots_woken
