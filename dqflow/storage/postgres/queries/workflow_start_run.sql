-- Start a workflow run in one statement (one round trip, atomic without a transaction):
-- the run row, already in the state its start planned (storage/workflows.py: Advance),
-- and the jobs of its first steps. Job ids are drawn up front and put in place of the
-- step state's placeholders (-k: the k-th job of %(jobs)s). With an idempotency key that
-- a run already has, nothing is inserted and no row is answered (workflow_run_by_key.sql).
-- Inserted jobs get an `added` event and one NOTIFY per job type, and their concurrency
-- and rate keys their rows, as in add_jobs.sql.
WITH new_run AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('dqflow_workflow_runs', 'id')) AS id
),
input AS MATERIALIZED (
    SELECT $OPTION_FIELDS,
           ord,
           nextval('dqflow_jobs_id_seq') AS new_id
    FROM jsonb_array_elements(%(jobs)s::jsonb) WITH ORDINALITY AS t(r, ord)
),
state AS MATERIALIZED (
    SELECT coalesce(jsonb_agg(
               CASE WHEN jsonb_array_length(s.step -> 'job_ids') = 0 THEN s.step
                    ELSE jsonb_set(s.step, '{job_ids}', (
                        SELECT jsonb_agg(input.new_id ORDER BY j.n)
                        FROM jsonb_array_elements_text(s.step -> 'job_ids') WITH ORDINALITY AS j(v, n)
                        JOIN input ON input.ord = -(j.v)::bigint))
               END ORDER BY s.n), '[]'::jsonb) AS steps
    FROM jsonb_array_elements(%(steps)s::jsonb) WITH ORDINALITY AS s(step, n)
),
run AS (
    INSERT INTO dqflow_workflow_runs (id, name, status, input, output, tags, idempotency_key, failure_reason,
                                      error, steps, version, created_at, updated_at, completed_at)
    SELECT new_run.id, %(name)s, %(status)s, %(input)s::json, %(output)s::json, %(tags)s::json,
           %(idempotency_key)s, %(failure_reason)s, %(error)s, state.steps::json, 1, now(), now(),
           CASE WHEN %(status)s = 'running' THEN NULL ELSE now() END
    FROM new_run, state
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
),
inserted AS (
    INSERT INTO dqflow_jobs (id, $OPTION_COLUMNS, created_at, updated_at)
    SELECT new_id, $RUN_OPTION_VALUES, now(), now()
    FROM input CROSS JOIN run  -- no run (its key is taken): no jobs
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
SELECT run.id FROM run CROSS JOIN woken
