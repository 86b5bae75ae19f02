-- Fenced output write (last write wins).
UPDATE dqflow_jobs
SET output = %(output)s::json, updated_at = now()
WHERE id = %(job_id)s AND status = 'processing' AND lease_token = %(lease_token)s
