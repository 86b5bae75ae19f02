-- Change fields of a pending job: each `set_<field>` flag says whether that
-- field changes. Records an `edited` event and wakes workers (run_at may now be
-- earlier). Answers like cancel_job.
WITH target AS (
    SELECT id, status FROM dqflow_jobs WHERE id = %(job_id)s FOR UPDATE
),
edited AS (
    UPDATE dqflow_jobs AS j
    SET payload = CASE WHEN %(set_payload)s THEN %(payload)s::json ELSE j.payload END,
        priority = CASE WHEN %(set_priority)s THEN %(priority)s::integer ELSE j.priority END,
        run_at = CASE WHEN %(set_run_at)s THEN coalesce(%(run_at)s::timestamptz, now()) ELSE j.run_at END,
        max_attempts = CASE WHEN %(set_max_attempts)s THEN %(max_attempts)s::integer ELSE j.max_attempts END,
        timeout_ms = CASE WHEN %(set_timeout_ms)s THEN %(timeout_ms)s::bigint ELSE j.timeout_ms END,
        retry_delay_ms = CASE WHEN %(set_retry_delay_ms)s THEN %(retry_delay_ms)s::bigint
                              ELSE j.retry_delay_ms END,
        retry_backoff = CASE WHEN %(set_retry_backoff)s THEN %(retry_backoff)s::text ELSE j.retry_backoff END,
        retry_max_delay_ms = CASE WHEN %(set_retry_max_delay_ms)s THEN %(retry_max_delay_ms)s::bigint
                                  ELSE j.retry_max_delay_ms END,
        retry_jitter = CASE WHEN %(set_retry_jitter)s THEN %(retry_jitter)s::boolean ELSE j.retry_jitter END,
        tags = CASE WHEN %(set_tags)s THEN %(tags)s::jsonb ELSE j.tags END,
        updated_at = now()
    FROM target
    WHERE j.id = target.id AND target.status = 'pending'
    RETURNING j.*
),
event AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'edited', now(), jsonb_build_object('fields', %(fields)s::jsonb) FROM edited
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified FROM edited
)
SELECT target.status AS previous_status, edited.*
FROM target LEFT JOIN edited ON true CROSS JOIN woken
