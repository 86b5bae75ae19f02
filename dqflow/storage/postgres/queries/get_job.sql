SELECT * FROM dqflow_jobs WHERE id = %(job_id)s
