-- dqflow SQLite 0008: flow control (docs/FLOW_CONTROL.md).
-- Concurrency keys: a job added with one is claimed only while fewer than its
-- concurrency_limit jobs with that key are processing; the claim counts them through
-- a partial index (SQLite has one writer, so the count cannot go stale).
-- Rate limits: at most rate_limit starts per fixed window of rate_window_ms (aligned
-- to the epoch) per rate_key, counted in dqflow_rate_windows.
ALTER TABLE dqflow_jobs ADD COLUMN concurrency_key TEXT;
ALTER TABLE dqflow_jobs ADD COLUMN concurrency_limit INTEGER;
ALTER TABLE dqflow_jobs ADD COLUMN rate_key TEXT;
ALTER TABLE dqflow_jobs ADD COLUMN rate_limit INTEGER;
ALTER TABLE dqflow_jobs ADD COLUMN rate_window_ms INTEGER;
-- dead-letter: the job type and options of the job added when this one fails for good (JSON)
ALTER TABLE dqflow_jobs ADD COLUMN dead_letter TEXT;
CREATE INDEX dqflow_jobs_concurrency_processing ON dqflow_jobs (concurrency_key)
    WHERE status = 'processing' AND concurrency_key IS NOT NULL;
-- answers "is any pending job limited?" (none: the claim takes its plain path)
CREATE INDEX dqflow_jobs_limited_pending ON dqflow_jobs (id)
    WHERE status = 'pending' AND (concurrency_key IS NOT NULL OR rate_key IS NOT NULL);
-- one row per rate key: the end of its current window (epoch seconds), the starts
-- counted in it, and the limit they were counted against
CREATE TABLE dqflow_rate_windows (
    key         TEXT    PRIMARY KEY,
    window_end  REAL    NOT NULL,
    starts      INTEGER NOT NULL,
    lim         INTEGER NOT NULL
) WITHOUT ROWID;
