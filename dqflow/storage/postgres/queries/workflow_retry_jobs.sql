-- Put a retried run's failed and cancelled step jobs back to pending, runnable now,
-- as retry_job.sql does for one job; workers are woken when the transaction commits.
WITH retried AS (
    UPDATE dqflow_jobs AS j
    SET status = 'pending',
        attempts = 0,
        run_at = now(),
        failure_reason = NULL,
        progress = NULL,
        output = NULL,
        completed_at = NULL,
        cancelled_at = NULL,
        started_at = NULL,
        locked_by = NULL,
        locked_at = NULL,
        lease_expires_at = NULL,
        lease_token = j.lease_token + 1,
        last_retried_at = now(),
        updated_at = now()
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.status IN ('failed', 'cancelled')
    RETURNING j.id, j.job_type
),
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'retried', now(), jsonb_build_object('reason', 'workflow_retried') FROM retried
)
SELECT count(pg_notify(%(channel)s, job_type)) FROM (SELECT DISTINCT job_type FROM retried) AS types
