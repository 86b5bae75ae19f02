-- A fragment, not a statement: the CTEs that add the dead-letter job of each job in a CTE
-- named `dead` (jobs this statement failed for good that have a dead_letter; columns id,
-- job_type, payload, history, failure_reason, attempts, dead_letter), with its `added`
-- event, and wake the workers of its type. The payload is the envelope of
-- dqflow/schemas/dead_letter.json, the original payload kept as stored. Pasted where a
-- statement says $ADD_DEAD_LETTERS; the statement's final SELECT joins dead_letters_woken.
dead_letters AS (
    INSERT INTO dqflow_jobs (job_type, payload, priority, max_attempts, timeout_ms, retry_delay_ms, retry_backoff,
                             retry_max_delay_ms, retry_jitter)
    SELECT dead.dead_letter ->> 'job_type',
           format('{"original_id":%%s,"job_type":%%s,"payload":%%s,"error_history":%%s,"failure_reason":%%s,'
                  '"failed_at":%%s,"attempts":%%s}',
                  dead.id, to_json(dead.job_type), dead.payload, dead.history,
                  coalesce(to_json(dead.failure_reason)::text, 'null'),
                  to_json(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')),
                  dead.attempts)::json,
           coalesce((dead.dead_letter ->> 'priority')::integer, 0),
           coalesce((dead.dead_letter ->> 'max_attempts')::integer, 3),
           (dead.dead_letter ->> 'timeout_ms')::bigint,
           coalesce((dead.dead_letter ->> 'retry_delay_ms')::bigint, 10000),
           coalesce(dead.dead_letter ->> 'retry_backoff', 'exponential'),
           (dead.dead_letter ->> 'retry_max_delay_ms')::bigint,
           coalesce((dead.dead_letter ->> 'retry_jitter')::boolean, true)
    FROM dead
    ORDER BY dead.id
    RETURNING id, job_type
),
dead_letters_added AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at)
    SELECT id, 'added', now() FROM dead_letters
),
dead_letters_woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM dead_letters) AS types
)
