-- dqflow 0004: job dependencies (queue.add(..., depends_on=[ids])). One row per
-- (waiting job, job it waits for); the primary key finds a job's dependents when it
-- finishes, the index finds a job's own dependencies.
CREATE TABLE dqflow_job_dependencies (
    depends_on_id   bigint NOT NULL,
    job_id          bigint NOT NULL,
    PRIMARY KEY (depends_on_id, job_id)
);
CREATE INDEX dqflow_job_dependencies_job ON dqflow_job_dependencies (job_id);

-- How many of a waiting job's dependencies have not completed yet: the completion
-- that counts it down to 0 makes the job pending (complete_jobs.sql). One row per
-- job added with unfinished dependencies.
CREATE TABLE dqflow_job_waits (
    job_id      bigint  PRIMARY KEY,
    unfinished  integer NOT NULL
);
