-- dqflow 0005: workflow runs (storage/workflows.py). A step job carries its run, step and
-- fan-out index; a run row holds its input, status, output and the JSON state of its
-- steps, rewritten under the run's row lock (SELECT ... FOR UPDATE) in the same
-- transaction as the job changes that move it.
ALTER TABLE dqflow_jobs ADD COLUMN workflow_run_id bigint;
ALTER TABLE dqflow_jobs ADD COLUMN workflow_step text;
ALTER TABLE dqflow_jobs ADD COLUMN workflow_item integer;
CREATE INDEX dqflow_jobs_workflow_run ON dqflow_jobs (workflow_run_id) WHERE workflow_run_id IS NOT NULL;

CREATE TABLE dqflow_workflow_runs (
    id              bigserial   PRIMARY KEY,
    name            text        NOT NULL,
    status          text        NOT NULL,
    input           json        NOT NULL,
    output          json,
    tags            json        NOT NULL,
    idempotency_key text,
    failure_reason  text,
    error           text,
    steps           json        NOT NULL,
    version         bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    completed_at    timestamptz
);
CREATE UNIQUE INDEX dqflow_workflow_runs_idempotency_key
    ON dqflow_workflow_runs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX dqflow_workflow_runs_name_id ON dqflow_workflow_runs (name, id DESC);
CREATE INDEX dqflow_workflow_runs_status_id ON dqflow_workflow_runs (status, id DESC);
