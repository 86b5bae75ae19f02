-- Cancel a pending, waiting or processing job; the token bump fences off the
-- worker that may be running it; its waiting dependents are cancelled too
-- (cancel_dependents.sql); a processing job gives back its concurrency slot
-- (free_slots.sql). Answers the status found (no row: no such job)
-- and the updated job (NULL columns: the status did not allow it).
WITH RECURSIVE target AS (
    SELECT id, status FROM dqflow_jobs WHERE id = %(job_id)s FOR UPDATE
),
cancelled AS (
    UPDATE dqflow_jobs AS j
    SET status = 'cancelled',
        cancelled_at = now(),
        updated_at = now(),
        lease_expires_at = NULL,
        lease_token = j.lease_token + 1
    FROM target
    WHERE j.id = target.id AND target.status IN ('pending', 'waiting', 'processing')
    RETURNING j.*
),
given_up AS (
    SELECT id FROM cancelled
),
left_processing AS (
    SELECT cancelled.concurrency_key AS key, cancelled.job_type
    FROM cancelled CROSS JOIN target WHERE target.status = 'processing'
),
$FREE_SLOTS,
$CANCEL_DEPENDENTS,
event AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT cancelled.id, 'cancelled', now(), jsonb_build_object('previous_status', target.status)
    FROM cancelled CROSS JOIN target
)
SELECT target.status AS previous_status, cancelled.*
FROM target LEFT JOIN cancelled ON true CROSS JOIN slots_woken
