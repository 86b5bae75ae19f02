-- dqflow 0009: the worker registry (dqflow stats, dqflow health). Each running worker
-- replaces its row on every maintenance beat; rows unseen for a day are pruned.
CREATE TABLE dqflow_workers (
    worker_id   text        PRIMARY KEY,
    host        text        NOT NULL,
    pid         integer     NOT NULL,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    concurrency integer     NOT NULL,
    job_types   jsonb       NOT NULL
);
CREATE INDEX dqflow_workers_last_seen ON dqflow_workers (last_seen);
