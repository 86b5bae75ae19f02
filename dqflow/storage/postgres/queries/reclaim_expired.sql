-- Jobs whose lease expired (their worker died or stalled): back to pending
-- with a `reclaimed` event, or failed with reason lease_expired when their
-- attempts are used up (cancelling its waiting dependents, cancel_dependents.sql).
-- The token bump fences off the old worker either way; the jobs' concurrency slots
-- are given back (free_slots.sql); a job failed with a dead_letter adds its dead-letter
-- job (add_dead_letters.sql).
WITH RECURSIVE expired AS (
    SELECT id, locked_by
    FROM dqflow_jobs
    WHERE status = 'processing' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s::integer
    FOR UPDATE SKIP LOCKED
),
reclaimed AS (
    UPDATE dqflow_jobs AS j
    SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'pending' END,
        run_at = CASE WHEN j.attempts >= j.max_attempts THEN j.run_at ELSE now() END,
        failure_reason = CASE WHEN j.attempts >= j.max_attempts THEN 'lease_expired' ELSE j.failure_reason END,
        error_history = CASE WHEN j.attempts >= j.max_attempts
            THEN j.error_history || jsonb_build_array(jsonb_build_object(
                'attempt', j.attempts,
                'error', format('worker %%s stopped renewing its lease and the job has used all %%s attempts',
                                expired.locked_by, j.max_attempts),
                'reason', 'lease_expired',
                'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
                'traceback', NULL::text,
                'output', j.output::jsonb,
                'progress', j.progress))
            ELSE j.error_history END,
        last_failed_at = CASE WHEN j.attempts >= j.max_attempts THEN now() ELSE j.last_failed_at END,
        locked_by = NULL,
        locked_at = NULL,
        lease_expires_at = NULL,
        lease_token = j.lease_token + 1,
        updated_at = now()
    FROM expired
    WHERE j.id = expired.id
    RETURNING j.id, j.job_type, j.status, j.attempts, j.max_attempts, expired.locked_by AS previous_worker,
              j.concurrency_key, j.payload, j.error_history AS history, j.failure_reason, j.dead_letter,
              j.workflow_run_id, j.workflow_step, j.workflow_item
),
dead AS (
    SELECT id, job_type, payload, history, failure_reason, attempts, dead_letter
    FROM reclaimed WHERE status = 'failed' AND dead_letter IS NOT NULL
),
$ADD_DEAD_LETTERS,
left_processing AS (
    SELECT concurrency_key AS key, job_type FROM reclaimed
),
$FREE_SLOTS,
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id,
           CASE WHEN status = 'failed' THEN 'failed' ELSE 'reclaimed' END,
           now(),
           CASE WHEN status = 'failed'
               THEN jsonb_build_object(
                   'attempt', attempts,
                   'error', format('worker %%s stopped renewing its lease and the job has used all %%s attempts',
                                   previous_worker, max_attempts),
                   'reason', 'lease_expired',
                   'will_retry', false)
               ELSE jsonb_build_object('attempt', attempts, 'previous_worker', previous_worker)
           END
    FROM reclaimed
),
given_up AS (
    SELECT id FROM reclaimed WHERE status = 'failed'
),
$CANCEL_DEPENDENTS,
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM reclaimed WHERE status = 'pending') AS types
)
SELECT id, status, workflow_run_id, workflow_step, workflow_item,
       format('worker %%s stopped renewing its lease and the job has used all %%s attempts',
              previous_worker, max_attempts) AS error
FROM reclaimed CROSS JOIN woken CROSS JOIN slots_woken CROSS JOIN dead_letters_woken ORDER BY id
