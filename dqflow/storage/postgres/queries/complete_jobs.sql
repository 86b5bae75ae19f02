-- Complete a batch of jobs, fenced on status and lease token; a NULL output
-- keeps the stored one; an earlier attempt's failure reason is cleared. Answers the ids that applied
-- (with, for a workflow step job, its run, step, item and output); each gets a `completed` event.
-- The batch is addressed by primary key (id = ANY) and each job's own values are
-- looked up by its position in the arrays: no join, so the plan is always a
-- primary-key lookup whatever the table's statistics say. The arrays come in binary
-- format: a text-format array is quoted and escaped element by element on the client.
-- A waiting dependent counts its unfinished dependencies down in
-- dqflow_job_waits; the completion that brings it to 0 makes it pending (a `ready`
-- event, workers woken) in this same statement. Two completions racing for one
-- dependent serialise on its dqflow_job_waits row, and the second one counts down
-- from the first one's committed value, so exactly one of them sees 0.
-- The jobs' concurrency slots are given back (free_slots.sql).
-- `workflow_lock_complete_jobs` is this statement with the lines marked "runs locked" (and
-- without those marked "plain"): a step settle's batch locks its runs (lock_runs.sql) before
-- any job, as every change of a run does: the UPDATE waits for the lock (a one-time filter
-- on its count, evaluated before the first job row is read), and the answer holds the runs
-- and the drawn ids as well (a statement less per settle).
WITH
$LOCK_RUNS,                                                                -- runs locked
completed AS (
    UPDATE dqflow_jobs AS j
    SET status = 'completed',
        output = coalesce(
            ((%(output)b::text[])[array_position(%(job_id)b::bigint[], j.id)])::json, j.output
        ),
        failure_reason = NULL,
        completed_at = now(),
        updated_at = now(),
        lease_expires_at = NULL
    WHERE j.id = ANY(%(job_id)b::bigint[])
      AND j.status = 'processing'
      AND j.lease_token = (%(lease_token)b::bigint[])[array_position(%(job_id)b::bigint[], j.id)]
      AND (SELECT count(*) FROM runs_locked) >= 0                          -- runs locked
    RETURNING j.id, j.job_type, j.concurrency_key, j.workflow_run_id, j.workflow_step, j.workflow_item,
              CASE WHEN j.workflow_run_id IS NOT NULL THEN j.output END AS output
),
left_processing AS (
    SELECT concurrency_key AS key, job_type FROM completed
),
$FREE_SLOTS,
done_per_dependent AS (
    SELECT d.job_id, count(*) AS done
    FROM dqflow_job_dependencies AS d JOIN completed ON d.depends_on_id = completed.id
    GROUP BY d.job_id
),
locked AS (
    -- in id order, so two batches completing dependencies of the same jobs cannot deadlock
    SELECT w.job_id
    FROM dqflow_job_waits AS w JOIN done_per_dependent AS c ON c.job_id = w.job_id
    ORDER BY w.job_id
    FOR UPDATE OF w
),
counted AS (
    UPDATE dqflow_job_waits AS w
    SET unfinished = w.unfinished - c.done
    FROM done_per_dependent AS c JOIN locked ON locked.job_id = c.job_id
    WHERE w.job_id = c.job_id
    RETURNING w.job_id, w.unfinished
),
ready AS (
    UPDATE dqflow_jobs AS r
    SET status = 'pending', run_at = now(), updated_at = now()
    FROM counted
    WHERE r.id = counted.job_id AND counted.unfinished = 0 AND r.status = 'waiting'
    RETURNING r.id, r.job_type
),
ready_events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at)
    SELECT id, 'ready', now() FROM ready
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM ready) AS types
),
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at)
    SELECT id, 'completed', now() FROM completed
)
SELECT id, workflow_run_id, workflow_step, workflow_item, output FROM completed CROSS JOIN woken CROSS JOIN slots_woken -- plain
-- runs locked: part 1, the completed jobs as above (output as text); part 0, the locked
-- runs and the drawn ids, as workflow_lock_runs.sql answers them
SELECT 1 AS part, id, workflow_run_id AS version, workflow_item, workflow_step AS name,  -- runs locked
       output::text AS status, NULL AS input, NULL AS tags, NULL AS steps                -- runs locked
FROM completed CROSS JOIN woken CROSS JOIN slots_woken                                  -- runs locked
UNION ALL                                                                               -- runs locked
SELECT 0, id, version, NULL, name, status, input, tags, steps FROM runs_locked           -- runs locked
UNION ALL                                                                               -- runs locked
SELECT 0, nextval('dqflow_jobs_id_seq'), NULL, NULL, NULL, NULL, NULL, NULL, NULL       -- runs locked
FROM generate_series(1, %(draw)s::int)                                                  -- runs locked
