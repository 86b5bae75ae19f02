-- Record a batch of failed attempts, fenced on status and lease token: an entry
-- (attempt, error, reason, at, traceback, and the output and progress the attempt
-- stored) joins error_history; the job goes back to pending at retry_at with output
-- and progress cleared, or to failed (keeping both) when retry_at is NULL. Each
-- gets a `failed` event; retries wake workers.
-- A job failed for good cancels its waiting dependents (cancel_dependents.sql).
-- The jobs' concurrency slots are given back (free_slots.sql); a job failed for good
-- with a dead_letter adds its dead-letter job (add_dead_letters.sql).
-- Addressed by primary key; each job's values sit at its position in the arrays.
WITH RECURSIVE input AS (
    SELECT %(job_id)s::bigint[] AS ids,
           %(lease_token)s::bigint[] AS tokens,
           %(error)s::text[] AS errors,
           %(reason)s::text[] AS reasons,
           %(retry_at)s::timestamptz[] AS retry_ats,
           %(traceback)s::text[] AS tracebacks
),
failed AS (
    UPDATE dqflow_jobs AS j
    SET status = CASE WHEN t.retry_at IS NULL THEN 'failed' ELSE 'pending' END,
        run_at = coalesce(t.retry_at, j.run_at),
        failure_reason = t.reason,
        error_history = j.error_history || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts,
            'error', t.error,
            'reason', t.reason,
            'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
            'traceback', t.traceback,
            'output', j.output::jsonb,
            'progress', j.progress
        )),
        output = CASE WHEN t.retry_at IS NULL THEN j.output END,
        progress = CASE WHEN t.retry_at IS NULL THEN j.progress END,
        last_failed_at = now(),
        updated_at = now(),
        lease_expires_at = NULL
    FROM (
        SELECT input.ids[i] AS job_id, input.tokens[i] AS lease_token, input.errors[i] AS error,
               input.reasons[i] AS reason, input.retry_ats[i] AS retry_at, input.tracebacks[i] AS traceback
        FROM input, generate_subscripts(input.ids, 1) AS i
    ) AS t
    WHERE j.id = ANY(%(job_id)s::bigint[])
      AND j.id = t.job_id
      AND j.status = 'processing'
      AND j.lease_token = t.lease_token
    RETURNING j.id, j.job_type, j.attempts, t.error, t.reason, t.retry_at IS NOT NULL AS will_retry,
              j.concurrency_key, j.payload, j.error_history AS history, j.failure_reason, j.dead_letter,
              j.workflow_run_id, j.workflow_step, j.workflow_item
),
dead AS (
    SELECT id, job_type, payload, history, failure_reason, attempts, dead_letter
    FROM failed WHERE NOT will_retry AND dead_letter IS NOT NULL
),
$ADD_DEAD_LETTERS,
left_processing AS (
    SELECT concurrency_key AS key, job_type FROM failed
),
$FREE_SLOTS,
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'failed', now(), jsonb_build_object(
        'attempt', attempts, 'error', error, 'reason', reason, 'will_retry', will_retry)
    FROM failed
),
given_up AS (
    SELECT id FROM failed WHERE NOT will_retry
),
$CANCEL_DEPENDENTS,
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM failed WHERE will_retry) AS types
)
SELECT id, workflow_run_id, workflow_step, workflow_item, will_retry, reason, error
FROM failed CROSS JOIN woken CROSS JOIN slots_woken CROSS JOIN dead_letters_woken
