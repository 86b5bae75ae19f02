SELECT id FROM dqflow_workflow_runs WHERE idempotency_key = %(idempotency_key)s
