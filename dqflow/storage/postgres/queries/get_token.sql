-- A token, with its job's status (a pending token of a finished or deleted job reads as abandoned).
SELECT t.*, j.status AS job_status
FROM dqflow_tokens AS t LEFT JOIN dqflow_jobs AS j ON j.id = t.job_id
WHERE t.id = %(token_id)s
