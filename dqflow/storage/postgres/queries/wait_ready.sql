-- After wait_jobs.sql, as a statement of its own (it sees tokens completed meanwhile):
-- a job now waiting for a token that is no longer pending is made pending at once.
WITH ready AS (
    UPDATE dqflow_jobs AS j
    SET status = 'pending', run_at = now(), wait = NULL, wake_at = NULL, updated_at = now()
    FROM dqflow_tokens AS t
    WHERE j.id = ANY(%(job_id)s::bigint[])
      AND j.status = 'waiting'
      AND t.id = j.wait ->> 'token_id'
      AND t.status <> 'pending'
    RETURNING j.id, j.job_type, t.id AS token_id, t.status AS token_status
),
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'ready', now(), jsonb_build_object('token_id', token_id, 'reason', 'token_' || token_status)
    FROM ready
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM ready) AS types
)
SELECT id FROM ready CROSS JOIN woken
