-- Write runs' new states (storage/workflows.py: Advance): one element per run in each
-- array, in the same order; `output` and `steps` are JSON text (output null: none). The
-- text arrays are sent in binary format: a step state is JSON full of quotes, which a
-- text-format array would quote and escape on the client. `unnest` tells the planner how many runs
-- there are, so it probes the primary key once per run (a join filter against the runs
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
FROM unnest(%(run_ids)s::bigint[], %(status)b::text[], %(output)b::text[], %(failure_reason)b::text[],
            %(error)b::text[], %(steps)b::text[])
    AS u(run_id, status, output, failure_reason, error, steps)
WHERE r.id = u.run_id
