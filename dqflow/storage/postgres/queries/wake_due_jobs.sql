-- Make pending the waiting durable jobs whose wake time is due (a `ready` event, workers
-- woken); the pending token of a token wait is marked expired in the same statement.
-- Rows another writer holds (complete_token) are skipped: the next call takes them.
-- Commits without waiting for the WAL flush, like the claim: a wake-up lost in a server
-- crash leaves the job waiting with its wake time past, and the next call wakes it again.
WITH due AS (
    SELECT id, wait ->> 'token_id' AS token_id
    FROM dqflow_jobs
    WHERE status = 'waiting' AND wake_at IS NOT NULL AND wake_at <= now()
    ORDER BY wake_at
    LIMIT %(limit)s::integer
    FOR UPDATE SKIP LOCKED
),
woken_jobs AS (
    UPDATE dqflow_jobs AS j
    SET status = 'pending', run_at = now(), wait = NULL, wake_at = NULL, updated_at = now()
    FROM due
    WHERE j.id = due.id
    RETURNING j.id, j.job_type, due.token_id
),
expired AS (
    UPDATE dqflow_tokens AS t
    SET status = 'expired'
    FROM woken_jobs
    WHERE t.id = woken_jobs.token_id AND t.status = 'pending'
),
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'ready', now(),
           CASE WHEN token_id IS NULL THEN jsonb_build_object('reason', 'sleep_ended')
                ELSE jsonb_build_object('token_id', token_id, 'reason', 'token_timeout') END
    FROM woken_jobs
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM woken_jobs) AS types
)
SELECT id
FROM woken_jobs CROSS JOIN woken CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
