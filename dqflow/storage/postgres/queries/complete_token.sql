-- complete_token, then (token and job locked by lock_token.sql, checked by the caller):
-- store the data; if the job waits for this token, make it pending now (a `ready` event,
-- workers woken). Answers the completed token.
WITH completed AS (
    UPDATE dqflow_tokens
    SET status = 'completed', data = %(data)s::json, completed_at = now()
    WHERE id = %(token_id)s AND status = 'pending'
    RETURNING *
),
ready AS (
    UPDATE dqflow_jobs AS j
    SET status = 'pending', run_at = now(), wait = NULL, wake_at = NULL, updated_at = now()
    FROM completed
    WHERE j.id = completed.job_id AND j.status = 'waiting' AND j.wait ->> 'token_id' = completed.id
    RETURNING j.id, j.job_type
),
ready_events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'ready', now(), jsonb_build_object('token_id', %(token_id)s::text, 'reason', 'token_completed')
    FROM ready
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified FROM ready
)
SELECT completed.* FROM completed CROSS JOIN woken
