-- complete_token, first: lock the token's job, then the token (the order every writer
-- of both keeps: the wait settle and the wake-up lock the job first), and answer both.
WITH job AS (
    SELECT j.id, j.status, j.wait
    FROM dqflow_jobs AS j
    WHERE j.id = (SELECT job_id FROM dqflow_tokens WHERE id = %(token_id)s)
    FOR UPDATE OF j
),
token AS (
    SELECT * FROM dqflow_tokens WHERE id = %(token_id)s FOR UPDATE
)
SELECT token.*, job.status AS job_status, job.wait ->> 'token_id' AS job_waits_for,
       (token.timeout_at IS NOT NULL AND token.timeout_at <= now()) AS timed_out
FROM token LEFT JOIN job ON true
