-- dqflow SQLite 0001: the job table, its event history and the indexes the hot path
-- needs. Timestamps are REAL seconds since the epoch (UTC); JSON values are TEXT.
-- IF NOT EXISTS throughout: a file created before migrations were numbered has
-- exactly this schema, and applying this to it changes nothing.
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
