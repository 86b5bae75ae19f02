-- The runs of step jobs whose lease expired on their last attempt: reclaim_expired
-- locks them first, as every change of a run does.
SELECT DISTINCT workflow_run_id
FROM dqflow_jobs
WHERE status = 'processing' AND lease_expires_at < now() AND attempts >= max_attempts
  AND workflow_run_id IS NOT NULL
