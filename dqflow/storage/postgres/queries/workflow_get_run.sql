SELECT * FROM dqflow_workflow_runs WHERE id = %(run_id)s
