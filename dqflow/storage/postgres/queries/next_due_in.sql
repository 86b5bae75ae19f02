-- Seconds until the earliest pending job is due or a waiting durable job wakes
-- (negative: ready now; NULL: neither).
SELECT extract(epoch FROM least(
    (SELECT min(run_at) FROM dqflow_jobs
     WHERE status = 'pending'
       AND (%(job_types)s::text[] IS NULL OR job_type = ANY(%(job_types)s::text[]))),
    (SELECT min(wake_at) FROM dqflow_jobs
     WHERE status = 'waiting' AND wake_at IS NOT NULL
       AND (%(job_types)s::text[] IS NULL OR job_type = ANY(%(job_types)s::text[])))
) - now())::float8 AS due_in
