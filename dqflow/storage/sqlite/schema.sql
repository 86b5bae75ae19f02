-- dqflow embedded schema (SQLite). Timestamps are REAL seconds since the epoch (UTC);
-- JSON values are TEXT. Created on first use; every statement is idempotent.
CREATE TABLE IF NOT EXISTS dqflow_jobs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    job_type            TEXT    NOT NULL,
    payload             TEXT    NOT NULL,
    status              TEXT    NOT NULL DEFAULT 'pending',
    priority            INTEGER NOT NULL DEFAULT 0,
    run_at              REAL    NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL,
    timeout_ms          INTEGER,
    retry_delay_ms      INTEGER NOT NULL,
    retry_backoff       TEXT    NOT NULL,
    retry_max_delay_ms  INTEGER,
    retry_jitter        INTEGER NOT NULL,
    progress            INTEGER,
    output              TEXT,
    error_history       TEXT    NOT NULL DEFAULT '[]',
    failure_reason      TEXT,
    tags                TEXT    NOT NULL DEFAULT '[]',
    idempotency_key     TEXT    UNIQUE,
    created_at          REAL    NOT NULL,
    updated_at          REAL    NOT NULL,
    started_at          REAL,
    completed_at        REAL,
    last_failed_at      REAL,
    last_retried_at     REAL,
    cancelled_at        REAL,
    locked_by           TEXT,
    locked_at           REAL,
    lease_expires_at    REAL,
    lease_token         INTEGER NOT NULL DEFAULT 0
);

-- The claim walks this partial index only: finished jobs never slow it down.
CREATE INDEX IF NOT EXISTS dqflow_jobs_ready
    ON dqflow_jobs (priority DESC, run_at, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS dqflow_jobs_lease
    ON dqflow_jobs (lease_expires_at) WHERE status = 'processing';
CREATE INDEX IF NOT EXISTS dqflow_jobs_status_id ON dqflow_jobs (status, id);
CREATE INDEX IF NOT EXISTS dqflow_jobs_type_id ON dqflow_jobs (job_type, id);

CREATE TABLE IF NOT EXISTS dqflow_job_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    created_at  REAL    NOT NULL,
    data        TEXT
);
CREATE INDEX IF NOT EXISTS dqflow_job_events_job ON dqflow_job_events (job_id, id);

-- The change feed (storage/changes.py): job events (but `added`) and progress and output
-- writes, appended by triggers in the writer's own transaction, so every process's
-- changes are here in commit order. Only the newest ~10000 rows are kept.
CREATE TABLE IF NOT EXISTS dqflow_job_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    created_at  REAL    NOT NULL,
    data        TEXT
);
CREATE TRIGGER IF NOT EXISTS dqflow_job_changes_event AFTER INSERT ON dqflow_job_events
WHEN new.event_type <> 'added'
BEGIN
    INSERT INTO dqflow_job_changes (job_id, kind, created_at, data)
    VALUES (new.job_id, new.event_type, new.created_at, new.data);
END;
CREATE TRIGGER IF NOT EXISTS dqflow_job_changes_progress AFTER UPDATE OF progress ON dqflow_jobs
WHEN new.progress IS NOT NULL AND new.progress IS NOT old.progress
BEGIN
    INSERT INTO dqflow_job_changes (job_id, kind, created_at, data)
    VALUES (new.id, 'progress', (julianday('now') - 2440587.5) * 86400.0, json_object('progress', new.progress));
END;
CREATE TRIGGER IF NOT EXISTS dqflow_job_changes_output AFTER UPDATE OF output ON dqflow_jobs
WHEN new.output IS NOT NULL AND new.output IS NOT old.output
BEGIN
    INSERT INTO dqflow_job_changes (job_id, kind, created_at, data)
    VALUES (new.id, 'output', (julianday('now') - 2440587.5) * 86400.0, NULL);
END;
CREATE TRIGGER IF NOT EXISTS dqflow_job_changes_trim AFTER INSERT ON dqflow_job_changes
WHEN new.id % 100 = 0
BEGIN
    DELETE FROM dqflow_job_changes WHERE id <= new.id - 10000;
END;
