-- The change feed after a cursor (a row id), with each row's age: a reader stops at a gap
-- in the ids unless the row after it is old enough (postgres/changes.py); `oldest` and
-- `newest` tell a gap left by trimming (far behind) from one still being committed.
SELECT c.id, c.job_id, j.job_type, c.kind, c.created_at, c.data, j.workflow_run_id,
       extract(epoch FROM clock_timestamp() - c.created_at) AS age,
       (SELECT min(id) FROM dqflow_job_changes) AS oldest,
       (SELECT max(id) FROM dqflow_job_changes) AS newest
FROM dqflow_job_changes c
JOIN dqflow_jobs j ON j.id = c.job_id
WHERE c.id > %(after)s
ORDER BY c.id
LIMIT %(limit)s
