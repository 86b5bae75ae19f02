-- Clean-up dry run: how many jobs delete_finished_jobs.sql would delete with no limit.
SELECT count(*) FROM dqflow_jobs AS j
WHERE status IN ('completed', 'failed', 'cancelled')
  AND coalesce(completed_at, cancelled_at, last_failed_at) < %(before)s
  AND status = ANY(%(statuses)s::text[])
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
  AND NOT EXISTS (
      SELECT 1 FROM dqflow_job_dependencies AS d JOIN dqflow_jobs AS w ON w.id = d.job_id
      WHERE d.depends_on_id = j.id AND w.status = 'waiting')
