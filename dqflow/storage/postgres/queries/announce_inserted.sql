-- A fragment, not a statement: the `added` events of the jobs a CTE named `inserted`
-- (id, job_type) just inserted, and one NOTIFY per job type among them (`woken`, for the
-- statement's final SELECT to join, so it runs). Pasted where a statement says $ANNOUNCE_INSERTED.
added AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at)
    SELECT id, 'added', now() FROM inserted
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM inserted) AS types
)
