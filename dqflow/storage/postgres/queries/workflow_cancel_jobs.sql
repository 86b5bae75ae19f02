-- Cancel the unfinished jobs of a run that stopped (failed or cancelled): the token
-- bump fences off their workers, whose heartbeat then stops the handler; processing
-- ones give back their concurrency slots (free_slots.sql).
WITH target AS (
    SELECT id, status FROM dqflow_jobs
    WHERE id = ANY(%(ids)s::bigint[]) AND status IN ('pending', 'waiting', 'processing')
    ORDER BY id
    FOR UPDATE
),
cancelled AS (
    UPDATE dqflow_jobs AS j
    SET status = 'cancelled',
        failure_reason = %(reason)s,
        cancelled_at = now(),
        updated_at = now(),
        lease_expires_at = NULL,
        lease_token = j.lease_token + 1
    FROM target
    WHERE j.id = target.id
    RETURNING j.id, target.status AS previous_status, j.job_type, j.concurrency_key
),
left_processing AS (
    SELECT concurrency_key AS key, job_type FROM cancelled WHERE previous_status = 'processing'
),
$FREE_SLOTS,
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'cancelled', now(), jsonb_build_object('previous_status', previous_status, 'reason', %(reason)s::text)
    FROM cancelled
)
SELECT count(*) FROM slots_woken
