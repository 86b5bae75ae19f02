-- dqflow SQLite 0004: job dependencies (queue.add(..., depends_on=[ids])). One row per
-- (waiting job, job it waits for); the primary key finds a job's dependents when it
-- finishes, the index finds a job's own dependencies.
CREATE TABLE dqflow_job_dependencies (
    depends_on_id   INTEGER NOT NULL,
    job_id          INTEGER NOT NULL,
    PRIMARY KEY (depends_on_id, job_id)
) WITHOUT ROWID;
CREATE INDEX dqflow_job_dependencies_job ON dqflow_job_dependencies (job_id);
