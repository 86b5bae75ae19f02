-- retry_job: the dependencies of a job added with depends_on and their status,
-- share-locked until the retry commits (as lock_dependencies.sql does for an add).
SELECT d.depends_on_id, j.status
FROM dqflow_job_dependencies AS d JOIN dqflow_jobs AS j ON j.id = d.depends_on_id
WHERE d.job_id = %(job_id)s
ORDER BY d.depends_on_id
FOR SHARE OF j
