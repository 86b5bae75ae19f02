-- Insert a batch of jobs in one statement. Ids are drawn up front so every
-- result maps back to its input row; a job whose idempotency key exists is not
-- inserted and answers the existing id. Inserted jobs get an `added` event,
-- and one NOTIFY per job type wakes idle workers when the transaction commits.
WITH input AS MATERIALIZED (
    SELECT t.*, nextval('dqflow_jobs_id_seq') AS new_id
    FROM unnest(
        %(job_type)s::text[], %(payload)s::text[], %(priority)s::integer[], %(run_at)s::timestamptz[],
        %(max_attempts)s::integer[], %(timeout_ms)s::bigint[], %(retry_delay_ms)s::bigint[],
        %(retry_backoff)s::text[], %(retry_max_delay_ms)s::bigint[], %(retry_jitter)s::boolean[],
        %(tags)s::text[], %(idempotency_key)s::text[]
    ) WITH ORDINALITY AS t(
        job_type, payload, priority, run_at, max_attempts, timeout_ms, retry_delay_ms,
        retry_backoff, retry_max_delay_ms, retry_jitter, tags, idempotency_key, ord
    )
),
inserted AS (
    INSERT INTO dqflow_jobs (
        id, job_type, payload, priority, run_at, max_attempts, timeout_ms, retry_delay_ms,
        retry_backoff, retry_max_delay_ms, retry_jitter, tags, idempotency_key, created_at, updated_at
    )
    SELECT new_id, job_type, payload::jsonb, priority, coalesce(run_at, now()), max_attempts, timeout_ms,
           retry_delay_ms, retry_backoff, retry_max_delay_ms, retry_jitter, tags::jsonb, idempotency_key,
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
SELECT coalesce(
           inserted.id,
           (SELECT existing.id FROM dqflow_jobs AS existing
            WHERE existing.idempotency_key = input.idempotency_key)
       ) AS id,
       inserted.id IS NOT NULL AS created
FROM input
LEFT JOIN inserted ON inserted.id = input.new_id
CROSS JOIN woken
ORDER BY input.ord
