-- Insert a batch of jobs in one statement. Ids are drawn up front so every
-- result maps back to its input row; a job whose idempotency key exists is not
-- inserted and answers the existing id (looked up through the unique index). Inserted jobs get an `added` event,
-- and one NOTIFY per job type wakes idle workers when the transaction commits.
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
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
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
-- One row per input job (part 0, in input order: its pre-drawn id and, for a keyed
-- job, the id already holding that key) and one per inserted job (part 1). No join:
-- the caller pairs them up, so a batch of 10,000 never depends on a join plan.
SELECT 0 AS part,
       input.ord,
       input.new_id AS id,
       CASE WHEN input.idempotency_key IS NOT NULL THEN
           (SELECT existing.id FROM dqflow_jobs AS existing
            WHERE existing.idempotency_key = input.idempotency_key)
       END AS existing_id
FROM input
UNION ALL
SELECT 1, NULL, inserted.id, NULL
FROM inserted CROSS JOIN woken
ORDER BY part, ord
