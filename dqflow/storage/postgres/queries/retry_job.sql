-- Put a failed or cancelled job back to pending, runnable now, with a fresh
-- attempt count; wakes idle workers. Answers like cancel_job. A job with
-- unfinished dependencies goes back to waiting instead (%(unfinished)s of them,
-- counted by the caller under a share lock: its dqflow_job_waits row is reset).
WITH target AS (
    SELECT id, status FROM dqflow_jobs WHERE id = %(job_id)s FOR UPDATE
),
retried AS (
    UPDATE dqflow_jobs AS j
    SET status = CASE WHEN %(unfinished)s::integer > 0 THEN 'waiting' ELSE 'pending' END,
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
        wait = NULL,
        wake_at = NULL,
        steps = CASE WHEN %(reset_steps)s::boolean THEN '{}'::json ELSE j.steps END,
        last_retried_at = now(),
        updated_at = now()
    FROM target
    WHERE j.id = target.id AND target.status IN ('failed', 'cancelled')
    RETURNING j.*
),
event AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT retried.id, 'retried', now(), jsonb_build_object('previous_status', target.status)
    FROM retried CROSS JOIN target
),
waits AS (
    UPDATE dqflow_job_waits SET unfinished = %(unfinished)s::integer
    WHERE job_id = (SELECT id FROM retried)
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified FROM retried WHERE status = 'pending'
)
SELECT target.status AS previous_status, retried.*
FROM target LEFT JOIN retried ON true CROSS JOIN woken
