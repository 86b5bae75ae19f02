-- dqflow SQLite 0008: flow control. A job added with a concurrency key (a job type's
-- `concurrency`, or queue.add(..., group=...)) is claimed only while fewer than its
-- concurrency_limit jobs with that key are processing; the claim counts them through
-- this partial index (SQLite has one writer, so the count cannot go stale).
ALTER TABLE dqflow_jobs ADD COLUMN concurrency_key TEXT;
ALTER TABLE dqflow_jobs ADD COLUMN concurrency_limit INTEGER;
CREATE INDEX dqflow_jobs_concurrency_processing ON dqflow_jobs (concurrency_key)
    WHERE status = 'processing' AND concurrency_key IS NOT NULL;
CREATE INDEX dqflow_jobs_concurrency_pending ON dqflow_jobs (concurrency_key)
    WHERE status = 'pending' AND concurrency_key IS NOT NULL;
