-- Insert a workflow run (every step waiting); with an idempotency key that a run
-- already has, nothing is inserted and no row is answered (workflow_run_by_key.sql).
INSERT INTO dqflow_workflow_runs (name, status, input, tags, idempotency_key, steps, version, created_at, updated_at)
VALUES (%(name)s, 'running', %(input)s::json, %(tags)s::json, %(idempotency_key)s, %(steps)s::json, 0, now(), now())
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id
