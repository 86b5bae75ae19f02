-- dqflow SQLite 0009: the worker registry (dqflow stats, dqflow health). Each running
-- worker replaces its row on every maintenance beat; rows unseen for a day are pruned.
CREATE TABLE IF NOT EXISTS dqflow_workers (
    worker_id   TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    concurrency INTEGER NOT NULL,
    job_types   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dqflow_workers_last_seen ON dqflow_workers (last_seen);
