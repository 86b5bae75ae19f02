-- complete_token, second (its job already locked by lock_token_job.sql): lock the token and
-- answer it with what the caller checks (its job's status, whether its timeout passed).
SELECT t.*, j.status AS job_status, (t.timeout_at IS NOT NULL AND t.timeout_at <= now()) AS timed_out
FROM dqflow_tokens AS t LEFT JOIN dqflow_jobs AS j ON j.id = t.job_id
WHERE t.id = %(token_id)s
FOR UPDATE OF t
