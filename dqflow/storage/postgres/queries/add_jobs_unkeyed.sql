-- add_jobs.sql for a batch in which no job has an idempotency key: nothing can
-- conflict, so there is no ON CONFLICT arbitration, and every job is created
-- with the id drawn for it (answered in input order). Same JSON rows, same
-- `added` events and NOTIFY.
WITH input AS MATERIALIZED (
    -- One JSON array of rows [job_type, payload text, priority, run_at, max_attempts,
    -- timeout_ms, retry_delay_ms, retry_backoff, retry_max_delay_ms, retry_jitter, tags,
    -- idempotency_key]: one parameter, cheap to send for 10,000 jobs.
    SELECT r ->> 0 AS job_type,
           (r ->> 1)::json AS payload,
           (r ->> 2)::integer AS priority,
           (r ->> 3)::timestamptz AS run_at,
           (r ->> 4)::integer AS max_attempts,
           (r ->> 5)::bigint AS timeout_ms,
           (r ->> 6)::bigint AS retry_delay_ms,
           r ->> 7 AS retry_backoff,
           (r ->> 8)::bigint AS retry_max_delay_ms,
           (r ->> 9)::boolean AS retry_jitter,
           r -> 10 AS tags,
           r ->> 11 AS idempotency_key,
           ord,
           nextval('dqflow_jobs_id_seq') AS new_id
    FROM jsonb_array_elements(%(jobs)s::jsonb) WITH ORDINALITY AS t(r, ord)
),
inserted AS (
    INSERT INTO dqflow_jobs (
        id, job_type, payload, priority, run_at, max_attempts, timeout_ms, retry_delay_ms,
        retry_backoff, retry_max_delay_ms, retry_jitter, tags, idempotency_key, created_at, updated_at
    )
    SELECT new_id, job_type, payload, priority, coalesce(run_at, now()), max_attempts, timeout_ms,
           retry_delay_ms, retry_backoff, retry_max_delay_ms, retry_jitter, tags, idempotency_key,
           now(), now()
    FROM input
    RETURNING id, job_type
),
added AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at)
    SELECT id, 'added', now() FROM inserted
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM inserted) AS types
)
SELECT input.new_id AS id
FROM input CROSS JOIN woken
ORDER BY input.ord
