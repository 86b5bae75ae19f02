-- dqflow 0006: durable handlers (docs/DURABLE.md). A job's completed ctx.step results
-- by name (json, kept exactly as written), its current wait (while a durable handler
-- waits) and when that wait ends (NULL: not sleeping).
ALTER TABLE dqflow_jobs ADD COLUMN steps json NOT NULL DEFAULT '{}';
ALTER TABLE dqflow_jobs ADD COLUMN wait jsonb;
ALTER TABLE dqflow_jobs ADD COLUMN wake_at timestamptz;

-- The next wake-up and the due ones, without touching jobs that are not sleeping.
CREATE INDEX dqflow_jobs_wake ON dqflow_jobs (wake_at) WHERE status = 'waiting' AND wake_at IS NOT NULL;

-- Wait tokens (ctx.create_token), completed from outside (queue.complete_token).
CREATE TABLE dqflow_tokens (
    id            text        PRIMARY KEY,
    job_id        bigint      NOT NULL,
    status        text        NOT NULL DEFAULT 'pending',
    signal        text,
    schema        jsonb,
    data          json,
    timeout_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);
CREATE INDEX dqflow_tokens_job ON dqflow_tokens (job_id);
