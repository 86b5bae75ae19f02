-- Fenced progress write.
UPDATE dqflow_jobs
SET progress = %(progress)s::integer, updated_at = now()
WHERE id = %(job_id)s AND status = 'processing' AND lease_token = %(lease_token)s
