-- Write runs' new states (storage/workflows.py: Advance): one JSON array element per run,
-- `steps` as a nested JSON value and `output` as JSON text (null: none). One JSON parameter
-- rather than text arrays: a text array's every element is quoted and escaped on the
-- client, and a run's step state is JSON full of quotes. The runs' ids come again as an
-- array: the planner cannot see into the JSON, and without them it scans every run.
UPDATE dqflow_workflow_runs AS r
SET status = u.status,
    output = u.output::json,
    failure_reason = u.failure_reason,
    error = u.error,
    steps = u.steps,
    version = r.version + 1,
    updated_at = now(),
    completed_at = CASE WHEN u.status = 'running' THEN NULL ELSE now() END
FROM json_to_recordset(%(runs)s::json)
    AS u(run_id bigint, status text, output text, failure_reason text, error text, steps json)
WHERE r.id = ANY(%(ids)s::bigint[]) AND r.id = u.run_id
