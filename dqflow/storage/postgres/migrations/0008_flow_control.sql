-- dqflow 0008: flow control (docs/FLOW_CONTROL.md).
-- Concurrency keys: a job added with one is claimed only while fewer than its
-- concurrency_limit jobs with that key are processing. Rate limits: at most rate_limit
-- starts per fixed window of rate_window_ms (aligned to the epoch) per rate_key.
ALTER TABLE dqflow_jobs ADD COLUMN concurrency_key text;
ALTER TABLE dqflow_jobs ADD COLUMN concurrency_limit integer;
ALTER TABLE dqflow_jobs ADD COLUMN rate_key text;
ALTER TABLE dqflow_jobs ADD COLUMN rate_limit integer;
ALTER TABLE dqflow_jobs ADD COLUMN rate_window_ms bigint;
-- dead-letter: the job type and options of the job added when this one fails for good
ALTER TABLE dqflow_jobs ADD COLUMN dead_letter jsonb;

-- One row per concurrency key (written by add_jobs.sql): `active` counts its processing
-- jobs. The claim raises it with a row-locked UPDATE (so two concurrent claims, each
-- under READ COMMITTED, re-check the latest count and can never hand out more slots
-- than the limit); every statement that takes a job out of processing (complete,
-- fail, release, reclaim, cancel) lowers it in the same statement. `granted` is
-- scratch: the slots the last claim took, read back by that claim.
CREATE TABLE dqflow_concurrency_slots (
    key      text    PRIMARY KEY,
    active   integer NOT NULL DEFAULT 0,
    granted  integer NOT NULL DEFAULT 0
);

-- One row per rate key (written by add_jobs.sql): the end of its current window and the
-- starts counted in it, raised by the claim with a row-locked UPDATE like the slots
-- above (a window that has ended starts again from 0). `granted` is scratch as above.
CREATE TABLE dqflow_rate_windows (
    key         text        PRIMARY KEY,
    window_end  timestamptz NOT NULL DEFAULT '-infinity',
    starts      integer     NOT NULL DEFAULT 0,
    granted     integer     NOT NULL DEFAULT 0
);
