-- add_jobs with depends_on: the new jobs that wait (status waiting, not claimable)
-- with one row per unfinished dependency and their count (complete_jobs.sql counts
-- it down).
WITH edges AS (
    INSERT INTO dqflow_job_dependencies (depends_on_id, job_id)
    SELECT * FROM unnest(%(depends_on_id)s::bigint[], %(job_id)s::bigint[])
),
waits AS (
    INSERT INTO dqflow_job_waits (job_id, unfinished)
    SELECT * FROM unnest(%(waiting_id)s::bigint[], %(unfinished)s::integer[])
)
UPDATE dqflow_jobs SET status = 'waiting' WHERE id = ANY(%(waiting_id)s::bigint[])
