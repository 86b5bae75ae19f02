-- A job's status and age (ms, by the database's clock): add_unique and claim_tick read the
-- job named by the row they just locked.
SELECT status, extract(epoch FROM clock_timestamp() - created_at) * 1000 AS age_ms
FROM dqflow_jobs WHERE id = %(job_id)s
