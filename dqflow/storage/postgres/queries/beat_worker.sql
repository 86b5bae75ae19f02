-- A worker's beat: its registry row replaced, seen now; rows unseen for %(forget_after_s)s seconds pruned.
WITH pruned AS (
    DELETE FROM dqflow_workers
    WHERE last_seen < now() - make_interval(secs => %(forget_after_s)s::float8)
      AND worker_id <> %(worker_id)s
)
INSERT INTO dqflow_workers (worker_id, host, pid, started_at, last_seen, concurrency, job_types)
VALUES (%(worker_id)s, %(host)s, %(pid)s, %(started_at)s, now(), %(concurrency)s, %(job_types)s::jsonb)
ON CONFLICT (worker_id) DO UPDATE
SET host = EXCLUDED.host,
    pid = EXCLUDED.pid,
    started_at = EXCLUDED.started_at,
    last_seen = EXCLUDED.last_seen,
    concurrency = EXCLUDED.concurrency,
    job_types = EXCLUDED.job_types
