-- Write runs' new states (storage/workflows.py: Advance): `runs` is one JSON array with an
-- object per run (run_id, status, output, failure_reason, error; output: JSON text, null:
-- none), `steps` the runs' step states as JSON text, in the same order. The step states go
-- apart, as a text array in binary format: a step state is JSON full of quotes, which a JSON
-- string or a text-format array would escape on the client; the other columns are one JSON
-- text (cheaper to send than a list parameter each). `ROWS FROM` tells the planner how many
-- runs there are, so it probes the primary key once per run (a join filter against the runs
-- read by `id = ANY(...)` cost O(runs²) in a big settle).
UPDATE dqflow_workflow_runs AS r
SET status = u.status,
    output = u.output::json,
    failure_reason = u.failure_reason,
    error = u.error,
    steps = u.steps::json,
    version = r.version + 1,
    updated_at = now(),
    completed_at = CASE WHEN u.status = 'running' THEN NULL ELSE now() END
FROM ROWS FROM (
        json_to_recordset(%(runs)s::json)
            AS (run_id bigint, status text, output text, failure_reason text, error text),
        unnest(%(steps)b::text[])
    ) AS u(run_id, status, output, failure_reason, error, steps)
WHERE r.id = u.run_id
