-- Write a run's new state (storage/workflows.py: Advance).
UPDATE dqflow_workflow_runs
SET status = %(status)s,
    output = %(output)s::json,
    failure_reason = %(failure_reason)s,
    error = %(error)s,
    steps = %(steps)s::json,
    version = version + 1,
    updated_at = now(),
    completed_at = CASE WHEN %(status)s = 'running' THEN NULL ELSE now() END
WHERE id = %(run_id)s
