-- add_jobs with depends_on: the status of each dependency, share-locked until the
-- insert commits, so none of them can complete, fail or be cancelled between this
-- read and the dependents' rows (dqflow_job_dependencies, dqflow_job_waits) that
-- the completion counts down.
SELECT id, status
FROM dqflow_jobs
WHERE id = ANY(%(ids)s::bigint[])
ORDER BY id
FOR SHARE
