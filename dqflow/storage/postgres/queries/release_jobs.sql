-- Hand claimed jobs back to pending, runnable now (shutdown), fenced on status
-- and lease token; the attempt is refunded when the handler never started.
-- The token bump fences off the releasing worker. Answers the ids that applied.
WITH input AS (
    SELECT * FROM unnest(%(job_id)s::bigint[], %(lease_token)s::bigint[], %(started)s::boolean[])
        AS t(job_id, lease_token, started)
),
released AS (
    UPDATE dqflow_jobs AS j
    SET status = 'pending',
        run_at = now(),
        attempts = CASE WHEN input.started THEN j.attempts ELSE greatest(j.attempts - 1, 0) END,
        locked_by = NULL,
        locked_at = NULL,
        lease_expires_at = NULL,
        lease_token = j.lease_token + 1,
        updated_at = now()
    FROM input
    WHERE j.id = input.job_id AND j.status = 'processing' AND j.lease_token = input.lease_token
    RETURNING j.id, j.job_type
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM released) AS types
)
SELECT id FROM released CROSS JOIN woken
