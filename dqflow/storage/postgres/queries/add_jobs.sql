-- Insert a batch of jobs in one statement. Ids are drawn up front so every
-- result maps back to its input row; inserted jobs get an `added` event, and one
-- NOTIFY per job type wakes idle workers when the transaction commits.
--
-- Three statements come from this file (see _queries.py): `add_jobs` keeps the
-- lines marked "keyed" (a job whose idempotency key exists is not inserted and
-- answers the existing id, looked up through the unique index); `add_jobs_unkeyed`,
-- for a batch in which no job has a key, keeps the lines marked "unkeyed": nothing
-- can conflict, so there is no ON CONFLICT arbitration and every job is created
-- with the id drawn for it. Both draw the ids here (lines marked "drawn here");
-- `add_jobs_drawn` is `add_jobs_unkeyed` with ids the caller drew beforehand
-- (workflow_lock_runs.sql), one per job, after its option values (lines marked "given"): a
-- workflow's advance names its new jobs in the run's state, written in the same round
-- trip as this insert. The marks in capitals expand to one entry per job option
-- (dqflow.storage.base.JOB_OPTIONS), in that order.
WITH input AS MATERIALIZED (
    -- One JSON array of rows, a value per job option: one parameter, cheap to send
    -- for 10,000 jobs.
    SELECT $OPTION_FIELDS,
           ord,
           nextval('dqflow_jobs_id_seq') AS new_id                           -- drawn here
           (r ->> $ID_POSITION)::bigint AS new_id                             -- given
    FROM jsonb_array_elements(%(jobs)s::jsonb) WITH ORDINALITY AS t(r, ord)
),
inserted AS (
    INSERT INTO dqflow_jobs (id, $OPTION_COLUMNS, created_at, updated_at)
    SELECT new_id, $OPTION_VALUES, now(), now()
    FROM input
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING  -- keyed
    RETURNING id, job_type
),
$ANNOUNCE_INSERTED
-- keyed: one row per input job (part 0, in input order: its pre-drawn id and, for a
-- keyed job, the id already holding that key) and one per inserted job (part 1). No
-- join: the caller pairs them up, so a batch of 10,000 never depends on a join plan.
SELECT 0 AS part,                                                         -- keyed
       input.ord,                                                         -- keyed
       input.new_id AS id,                                                -- keyed
       CASE WHEN input.idempotency_key IS NOT NULL THEN                   -- keyed
           (SELECT existing.id FROM dqflow_jobs AS existing               -- keyed
            WHERE existing.idempotency_key = input.idempotency_key)       -- keyed
       END AS existing_id                                                 -- keyed
FROM input                                                                -- keyed
UNION ALL                                                                 -- keyed
SELECT 1, NULL, inserted.id, NULL                                         -- keyed
FROM inserted CROSS JOIN woken                                            -- keyed
ORDER BY part, ord                                                        -- keyed
-- unkeyed: every job is created with its pre-drawn id, answered in input order.
SELECT input.new_id AS id                                                 -- unkeyed
FROM input CROSS JOIN woken                                               -- unkeyed
ORDER BY input.ord                                                        -- unkeyed
