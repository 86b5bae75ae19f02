-- The worker registry, the most recently seen first (dqflow stats, dqflow health).
SELECT worker_id, host, pid, started_at, last_seen, concurrency, job_types
FROM dqflow_workers
ORDER BY last_seen DESC, worker_id
