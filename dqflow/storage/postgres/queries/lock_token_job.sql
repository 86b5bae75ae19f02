-- complete_token, first: lock the token's job (before the token: the order every writer of
-- both keeps; the wait settle and the wake-up lock the job first). Answers nothing needed.
SELECT id FROM dqflow_jobs
WHERE id = (SELECT job_id FROM dqflow_tokens WHERE id = %(token_id)s)
FOR UPDATE
