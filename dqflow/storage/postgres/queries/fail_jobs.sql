-- Record a batch of failed attempts, fenced on status and lease token: the
-- error joins error_history; the job goes back to pending at retry_at, or to
-- failed when retry_at is NULL. Each gets a `failed` event; retries wake workers.
WITH input AS (
    SELECT * FROM unnest(
        %(job_id)s::bigint[], %(lease_token)s::bigint[], %(error)s::text[], %(reason)s::text[],
        %(retry_at)s::timestamptz[]
    ) AS t(job_id, lease_token, error, reason, retry_at)
),
failed AS (
    UPDATE dqflow_jobs AS j
    SET status = CASE WHEN input.retry_at IS NULL THEN 'failed' ELSE 'pending' END,
        run_at = coalesce(input.retry_at, j.run_at),
        failure_reason = input.reason,
        error_history = j.error_history || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts,
            'error', input.error,
            'reason', input.reason,
            'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
        )),
        last_failed_at = now(),
        updated_at = now(),
        lease_expires_at = NULL
    FROM input
    WHERE j.id = input.job_id AND j.status = 'processing' AND j.lease_token = input.lease_token
    RETURNING j.id, j.job_type, j.attempts, input.error, input.reason, input.retry_at IS NOT NULL AS will_retry
),
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'failed', now(), jsonb_build_object(
        'attempt', attempts, 'error', error, 'reason', reason, 'will_retry', will_retry)
    FROM failed
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM failed WHERE will_retry) AS types
)
SELECT id FROM failed CROSS JOIN woken
