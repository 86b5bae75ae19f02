-- dqflow 0007: cron schedules (docs/SCHEDULES.md). One row per schedule a worker has
-- claimed a tick of or someone paused: the last claimed tick (a tick is claimed once,
-- for all workers, by moving it forward under the row lock), the job of the last run
-- (for `overlap: skip`) and the paused flag.
CREATE TABLE dqflow_schedules (
    name         text        PRIMARY KEY,
    last_tick    timestamptz,
    last_job_id  bigint,
    paused       boolean     NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Clean-up (retention, `dqflow cleanup`): finished jobs by finish time, oldest first. Partial,
-- and on columns only a status change writes (which is never a HOT update anyway: status is
-- indexed), so progress, output and lease writes stay HOT.
CREATE INDEX dqflow_jobs_finished ON dqflow_jobs ((coalesce(completed_at, cancelled_at, last_failed_at)))
    WHERE status IN ('completed', 'failed', 'cancelled');

-- Unique jobs (job types' `unique`, Queue.add(unique=...)): each unique key → the newest
-- job added with it, which decides whether a new one is a duplicate. Its row is the lock
-- that makes the check and the insert one step (queries/lock_unique_key.sql).
CREATE TABLE dqflow_unique_keys (
    key     text   PRIMARY KEY,
    job_id  bigint NOT NULL
);
CREATE INDEX dqflow_unique_keys_job ON dqflow_unique_keys (job_id);  -- clean-up drops the keys of deleted jobs

-- Clean-up positions: `events` is the finish time up to which finished jobs have had their
-- history deleted (retention.events), so each pass starts where the last one stopped.
CREATE TABLE dqflow_cleanup_state (
    name      text PRIMARY KEY,
    position  timestamptz NOT NULL
);
