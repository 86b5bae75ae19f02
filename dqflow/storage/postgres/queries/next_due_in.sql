-- Seconds until the earliest pending job is due (negative: ready now; NULL: none pending).
SELECT extract(epoch FROM min(run_at) - now())::float8 AS due_in
FROM dqflow_jobs
WHERE status = 'pending'
  AND (%(job_types)s::text[] IS NULL OR job_type = ANY(%(job_types)s::text[]))
