-- Start a batch of workflow runs in one statement (one round trip, atomic without a
-- transaction): the run rows, each already in the state its start planned
-- (storage/workflows.py: planned_starts), and the jobs of their first steps.
-- Runs come as one JSON array of rows (name, status, input, output, tags, idempotency key,
-- failure reason, error, steps; JSON values as text, kept as written), jobs as one JSON
-- array of rows as in add_jobs.sql, whose workflow_run_id is the place of the job's run
-- in the batch (1-based). Run and job ids are drawn up front; a run's step state names its
-- jobs -k (the k-th job of %(jobs)s: storage/workflows.py batch_steps_json), replaced
-- here by their ids. A run whose idempotency key is taken (by a stored run or an earlier
-- run of the batch) is not inserted, nor are its jobs (the caller looks it up:
-- workflow_run_by_key.sql). Inserted jobs get an `added` event and one NOTIFY per job
-- type, as in add_jobs.sql. Answers one row: the runs' drawn ids by place, and the ids
-- inserted.
-- No CTE is joined to another: the planner takes a CTE for 100 rows, and its nested loop
-- over two CTEs of 1,000 runs compared a million pairs per join. A run's id is looked up
-- by its place in an array instead, and a job's run is checked for having been inserted
-- only when the batch has idempotency keys (a run without one is always inserted).
WITH input AS MATERIALIZED (
    SELECT $OPTION_FIELDS,
           ord,
           nextval('dqflow_jobs_id_seq') AS new_id
    FROM jsonb_array_elements(%(jobs)s::jsonb) WITH ORDINALITY AS t(r, ord)
),
drawn AS MATERIALIZED (
    -- the drawn job ids by place: -k in a step's job_ids is drawn.ids[k] (no join per step)
    SELECT coalesce(array_agg(new_id ORDER BY ord), '{}') AS ids FROM input
),
new_runs AS MATERIALIZED (
    SELECT t.ord AS run_ord,
           nextval(pg_get_serial_sequence('dqflow_workflow_runs', 'id')) AS id,
           r ->> 0 AS name, r ->> 1 AS status, r ->> 2 AS input, r ->> 3 AS output, r ->> 4 AS tags,
           r ->> 5 AS idempotency_key, r ->> 6 AS failure_reason, r ->> 7 AS error,
           (SELECT coalesce(jsonb_agg(
                       CASE WHEN jsonb_array_length(s.step -> 'job_ids') = 0 THEN s.step
                            ELSE jsonb_set(s.step, '{job_ids}', (
                                SELECT jsonb_agg(drawn.ids[-(j.v)::int] ORDER BY j.n)
                                FROM jsonb_array_elements_text(s.step -> 'job_ids') WITH ORDINALITY AS j(v, n)))
                       END ORDER BY s.n), '[]'::jsonb)
            FROM jsonb_array_elements((r ->> 8)::jsonb) WITH ORDINALITY AS s(step, n)) AS steps
    FROM jsonb_array_elements(%(runs)s::jsonb) WITH ORDINALITY AS t(r, ord) CROSS JOIN drawn
),
batch AS MATERIALIZED (
    -- the runs' ids by place (a job's workflow_run_id in %(jobs)s is its run's place)
    SELECT array_agg(id ORDER BY run_ord) AS run_ids, bool_or(idempotency_key IS NOT NULL) AS keyed FROM new_runs
),
run AS (
    INSERT INTO dqflow_workflow_runs (id, name, status, input, output, tags, idempotency_key, failure_reason,
                                      error, steps, version, created_at, updated_at, completed_at)
    SELECT id, name, status, input::json, output::json, tags::json, idempotency_key, failure_reason, error,
           steps::json, 1, now(), now(), CASE WHEN status = 'running' THEN NULL ELSE now() END
    FROM new_runs
    ORDER BY run_ord  -- a key repeated in the batch: its first run is inserted
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
),
started AS MATERIALIZED (
    SELECT coalesce(array_agg(id), '{}') AS run_ids FROM run
),
inserted AS (
    INSERT INTO dqflow_jobs (id, $OPTION_COLUMNS, created_at, updated_at)
    SELECT new_id, $RUN_OPTION_VALUES, now(), now()
    FROM input CROSS JOIN batch CROSS JOIN started
    WHERE NOT batch.keyed OR batch.run_ids[input.workflow_run_id] = ANY(started.run_ids)  -- its run was inserted
    RETURNING id, job_type
),
$ANNOUNCE_INSERTED
SELECT batch.run_ids, started.run_ids FROM batch CROSS JOIN started CROSS JOIN woken
