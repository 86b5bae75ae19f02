SELECT id, job_id, event_type, created_at, data
FROM dqflow_job_events
WHERE job_id = %(job_id)s
ORDER BY id
