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
