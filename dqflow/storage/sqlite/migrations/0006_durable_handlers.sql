-- dqflow SQLite 0006: durable handlers (docs/DURABLE.md). A job's completed ctx.step
-- results by name (JSON object), its current wait (JSON, while a durable handler waits)
-- and when that wait ends (REAL seconds; NULL: not sleeping).
ALTER TABLE dqflow_jobs ADD COLUMN steps TEXT NOT NULL DEFAULT '{}';
ALTER TABLE dqflow_jobs ADD COLUMN wait TEXT;
ALTER TABLE dqflow_jobs ADD COLUMN wake_at REAL;

-- The next wake-up and the due ones, without touching jobs that are not sleeping.
CREATE INDEX dqflow_jobs_wake ON dqflow_jobs (wake_at) WHERE status = 'waiting' AND wake_at IS NOT NULL;

-- Wait tokens (ctx.create_token), completed from outside (queue.complete_token).
CREATE TABLE dqflow_tokens (
    id            TEXT    PRIMARY KEY,
    job_id        INTEGER NOT NULL,
    status        TEXT    NOT NULL DEFAULT 'pending',
    signal        TEXT,
    schema        TEXT,
    data          TEXT,
    timeout_at    REAL,
    created_at    REAL    NOT NULL,
    completed_at  REAL
) WITHOUT ROWID;
CREATE INDEX dqflow_tokens_job ON dqflow_tokens (job_id);
