-- The run of a job (NULL: a plain job), read before the run is locked.
SELECT workflow_run_id FROM dqflow_jobs WHERE id = %(job_id)s
