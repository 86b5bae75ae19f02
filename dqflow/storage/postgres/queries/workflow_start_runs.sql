-- Start a batch of workflow runs in one statement (one round trip, atomic without a
-- transaction): the run rows, each already in the state its start planned
-- (storage/workflows.py: planned_starts), and the jobs of their first steps.
-- Runs come as one JSON array of rows (name, status, input, output, tags, idempotency key,
-- failure reason, error, steps; JSON values as text, kept as written), jobs as one JSON
-- array of rows as in add_jobs.sql, whose workflow_run_id is the place of the job's run
-- in the batch (1-based). Run and job ids are drawn up front; a run's step state names its
-- jobs -k (the k-th job of %(jobs)s: storage/workflows.py batch_steps_json), replaced
-- here by their ids. A run whose idempotency key is taken (by a stored run or an earlier
-- run of the batch) is not inserted, nor are its jobs; it answers no row (the caller
-- looks it up: workflow_run_by_key.sql). Inserted jobs get an `added` event and one
-- NOTIFY per job type, as in add_jobs.sql.
WITH new_runs AS MATERIALIZED (
    SELECT t.ord AS run_ord,
           nextval(pg_get_serial_sequence('dqflow_workflow_runs', 'id')) AS id,
           r ->> 0 AS name, r ->> 1 AS status, r ->> 2 AS input, r ->> 3 AS output, r ->> 4 AS tags,
           r ->> 5 AS idempotency_key, r ->> 6 AS failure_reason, r ->> 7 AS error, r ->> 8 AS steps
    FROM jsonb_array_elements(%(runs)s::jsonb) WITH ORDINALITY AS t(r, ord)
),
input AS MATERIALIZED (
    SELECT $OPTION_FIELDS,
           ord,
           nextval('dqflow_jobs_id_seq') AS new_id
    FROM jsonb_array_elements(%(jobs)s::jsonb) WITH ORDINALITY AS t(r, ord)
),
drawn AS MATERIALIZED (
    -- the drawn job ids by place: -k in a step's job_ids is drawn.ids[k] (no join per step)
    SELECT coalesce(array_agg(new_id ORDER BY ord), '{}') AS ids FROM input
),
state AS MATERIALIZED (
    SELECT new_runs.id,
           (SELECT coalesce(jsonb_agg(
                       CASE WHEN jsonb_array_length(s.step -> 'job_ids') = 0 THEN s.step
                            ELSE jsonb_set(s.step, '{job_ids}', (
                                SELECT jsonb_agg(drawn.ids[-(j.v)::int] ORDER BY j.n)
                                FROM jsonb_array_elements_text(s.step -> 'job_ids') WITH ORDINALITY AS j(v, n)))
                       END ORDER BY s.n), '[]'::jsonb)
            FROM jsonb_array_elements(new_runs.steps::jsonb) WITH ORDINALITY AS s(step, n)) AS steps
    FROM new_runs CROSS JOIN drawn
),
run AS (
    INSERT INTO dqflow_workflow_runs (id, name, status, input, output, tags, idempotency_key, failure_reason,
                                      error, steps, version, created_at, updated_at, completed_at)
    SELECT new_runs.id, new_runs.name, new_runs.status, new_runs.input::json, new_runs.output::json,
           new_runs.tags::json, new_runs.idempotency_key, new_runs.failure_reason, new_runs.error,
           state.steps::json, 1, now(), now(), CASE WHEN new_runs.status = 'running' THEN NULL ELSE now() END
    FROM new_runs JOIN state ON state.id = new_runs.id
    ORDER BY new_runs.run_ord  -- a key repeated in the batch: its first run is inserted
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
),
started AS (
    SELECT new_runs.run_ord, run.id FROM run JOIN new_runs ON new_runs.id = run.id
),
inserted AS (
    INSERT INTO dqflow_jobs (id, $OPTION_COLUMNS, created_at, updated_at)
    SELECT new_id, $RUN_OPTION_VALUES, now(), now()
    FROM input JOIN started AS run ON run.run_ord = input.workflow_run_id  -- no run (its key is taken): no jobs
    RETURNING id, job_type
),
$ANNOUNCE_INSERTED
SELECT started.run_ord, started.id FROM started CROSS JOIN woken
