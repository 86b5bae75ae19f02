-- A worker that stopped cleanly leaves the registry.
DELETE FROM dqflow_workers WHERE worker_id = %(worker_id)s
