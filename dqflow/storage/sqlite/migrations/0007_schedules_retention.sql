-- dqflow SQLite 0007: cron schedules (docs/SCHEDULES.md). One row per schedule a worker
-- has claimed a tick of or someone paused: the last claimed tick (epoch seconds; a
-- tick is claimed once, for all workers, by moving it forward), the job of the last
-- run (for `overlap: skip`) and the paused flag.
CREATE TABLE dqflow_schedules (
    name         TEXT    PRIMARY KEY,
    last_tick    REAL,
    last_job_id  INTEGER,
    paused       INTEGER NOT NULL DEFAULT 0,
    updated_at   REAL    NOT NULL
) WITHOUT ROWID;

-- Clean-up (retention, `dqflow cleanup`): finished jobs by finish time, oldest first. Partial,
-- and on columns only a status change writes, so progress, output and lease writes do not
-- maintain it.
CREATE INDEX dqflow_jobs_finished ON dqflow_jobs (coalesce(completed_at, cancelled_at, last_failed_at))
    WHERE status IN ('completed', 'failed', 'cancelled');

-- Unique jobs (job types' `unique`, Queue.add(unique=...)): each unique key → the newest
-- job added with it, which decides whether a new one is a duplicate.
CREATE TABLE dqflow_unique_keys (
    key     TEXT    PRIMARY KEY,
    job_id  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dqflow_unique_keys_job ON dqflow_unique_keys (job_id);  -- clean-up drops the keys of deleted jobs

-- Clean-up positions: `events` is the finish time up to which finished jobs have had their
-- history deleted (retention.events), so each pass starts where the last one stopped.
CREATE TABLE dqflow_cleanup_state (
    name      TEXT PRIMARY KEY,
    position  REAL NOT NULL
);
