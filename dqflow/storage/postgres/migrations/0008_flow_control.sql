-- dqflow 0008: flow control. A job added with a concurrency key (a job type's
-- `concurrency`, or queue.add(..., group=...)) is claimed only while fewer than its
-- concurrency_limit jobs with that key are processing.
ALTER TABLE dqflow_jobs ADD COLUMN concurrency_key text;
ALTER TABLE dqflow_jobs ADD COLUMN concurrency_limit integer;

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
