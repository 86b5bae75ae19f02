-- dqflow SQLite 0005: workflow runs (storage/workflows.py). A step job carries its run,
-- step and fan-out index; a run row holds its input, status, output and the JSON state
-- of its steps, rewritten under the write lock with the job changes that move it.
ALTER TABLE dqflow_jobs ADD COLUMN workflow_run_id INTEGER;
ALTER TABLE dqflow_jobs ADD COLUMN workflow_step TEXT;
ALTER TABLE dqflow_jobs ADD COLUMN workflow_item INTEGER;
CREATE INDEX dqflow_jobs_workflow_run ON dqflow_jobs (workflow_run_id) WHERE workflow_run_id IS NOT NULL;
CREATE TABLE dqflow_workflow_runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    input           TEXT    NOT NULL,
    output          TEXT,
    tags            TEXT    NOT NULL DEFAULT '[]',
    idempotency_key TEXT    UNIQUE,
    failure_reason  TEXT,
    error           TEXT,
    steps           TEXT    NOT NULL,
    version         INTEGER NOT NULL DEFAULT 0,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    completed_at    REAL
);
CREATE INDEX dqflow_workflow_runs_name_id ON dqflow_workflow_runs (name, id);
CREATE INDEX dqflow_workflow_runs_status_id ON dqflow_workflow_runs (status, id);
