-- Lock workflow runs (in id order, so two transactions cannot deadlock on them) and
-- read their state: every change of a run happens under this lock.
SELECT id, name, status, input, tags, steps, version
FROM dqflow_workflow_runs
WHERE id = ANY(%(ids)b::bigint[])
ORDER BY id
FOR UPDATE
