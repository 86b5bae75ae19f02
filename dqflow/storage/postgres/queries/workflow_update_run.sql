-- Write runs' new states (storage/workflows.py: Advance), one array element per run.
UPDATE dqflow_workflow_runs AS r
SET status = u.status,
    output = u.output::json,
    failure_reason = u.failure_reason,
    error = u.error,
    steps = u.steps::json,
    version = r.version + 1,
    updated_at = now(),
    completed_at = CASE WHEN u.status = 'running' THEN NULL ELSE now() END
FROM unnest(%(run_id)s::bigint[], %(status)s::text[], %(output)s::text[], %(failure_reason)s::text[],
            %(error)s::text[], %(steps)s::text[]) AS u(run_id, status, output, failure_reason, error, steps)
WHERE r.id = u.run_id
