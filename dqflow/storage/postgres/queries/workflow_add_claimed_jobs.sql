-- add_jobs_drawn (add_jobs.sql) for a step settle that claims some of the jobs it adds for
-- the settling worker (Storage.settle_and_claim: eager dispatch). The jobs whose drawn id is
-- in `claimed` are inserted already claimed, as claim_jobs.sql leaves a job it claims:
-- processing, attempt 1, a new lease token (the claim's step above a new job's token 0),
-- locked by `worker_id`, a lease of `lease_ms`, started now, no output or progress. They are
-- never pending, not even uncommitted, so no other claim can see them as ready. Each gets its
-- `added` event and then (the one INSERT writes its rows in the order of its UNION ALL) a
-- `processing` event, both at now(): the one clock reading of the settle's transaction. The
-- rest are added pending, exactly as add_jobs_drawn adds them (attempts and lease token
-- at their column defaults, 0), and only their types are notified. Answers the claimed
-- rows, whole, as claim_jobs.sql does. `_queries.py` appends workflow_update_run.sql as a
-- CTE (`updated`) and the final SELECT, as it does for `workflow_add_jobs_update_runs`.
WITH input AS MATERIALIZED (
    SELECT $OPTION_FIELDS,
           ord,
           (r ->> $ID_POSITION)::bigint AS new_id
    FROM jsonb_array_elements(%(jobs)s::jsonb) WITH ORDINALITY AS t(r, ord)
),
inserted AS (
    INSERT INTO dqflow_jobs (id, $OPTION_COLUMNS, created_at, updated_at,
                             status, attempts, lease_token, locked_by, locked_at, lease_expires_at, started_at)
    SELECT new_id, $OPTION_VALUES, now(), now(),
           CASE WHEN claimed THEN 'processing' ELSE 'pending' END,
           CASE WHEN claimed THEN 1 ELSE 0 END,
           CASE WHEN claimed THEN 1 + floor(random() * 2147483647)::bigint ELSE 0 END,
           CASE WHEN claimed THEN %(worker_id)s::text END,
           CASE WHEN claimed THEN now() END,
           CASE WHEN claimed THEN now() + %(lease_ms)s::bigint * interval '1 millisecond' END,
           CASE WHEN claimed THEN now() END
    FROM (SELECT input.*, new_id = ANY(%(claimed)s::bigint[]) AS claimed FROM input) AS flagged
    RETURNING *
),
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'added', now(), NULL FROM inserted
    UNION ALL
    SELECT id, 'processing', now(), jsonb_build_object('worker_id', locked_by, 'attempt', attempts)
    FROM inserted WHERE status = 'processing'
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM inserted WHERE status = 'pending') AS types
)
