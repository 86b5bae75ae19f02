-- A fragment, not a statement: the CTEs that cancel, with reason dependency_failed,
-- the waiting dependents of the jobs in a CTE named `given_up` (failed for good or
-- cancelled), and their waiting dependents in turn, each with a `cancelled` event
-- naming the dependency. Pasted where a statement says $CANCEL_DEPENDENTS; the
-- statement starts with WITH RECURSIVE. Waiting rows are never the rows the
-- statement itself changes, and a concurrent completion that makes one pending
-- first leaves it out (status = 'waiting' is re-checked on the row's latest version).
doomed(id, dependency_id) AS (
    SELECT d.job_id, d.depends_on_id
    FROM dqflow_job_dependencies AS d JOIN given_up ON d.depends_on_id = given_up.id
    UNION
    SELECT d.job_id, d.depends_on_id
    FROM dqflow_job_dependencies AS d JOIN doomed ON d.depends_on_id = doomed.id
),
dependents_cancelled AS (
    UPDATE dqflow_jobs AS w
    SET status = 'cancelled',
        failure_reason = 'dependency_failed',
        cancelled_at = now(),
        updated_at = now(),
        lease_token = w.lease_token + 1
    FROM (SELECT DISTINCT ON (id) id, dependency_id FROM doomed ORDER BY id, dependency_id) AS x
    WHERE w.id = x.id AND w.status = 'waiting'
    RETURNING w.id, x.dependency_id
),
dependents_events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'cancelled', now(), jsonb_build_object(
        'previous_status', 'waiting', 'reason', 'dependency_failed', 'dependency_id', dependency_id)
    FROM dependents_cancelled
)
