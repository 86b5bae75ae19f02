-- Clean-up: up to %(limit)s finished jobs of the given statuses (and type) that finished
-- before %(before)s, oldest first through the partial index dqflow_jobs_finished (its
-- expression and condition are repeated word for word), skipping rows another transaction
-- holds and jobs a waiting dependent still needs; deleted with their events, links, unique keys and
-- wait tokens.
WITH doomed AS (
    SELECT id FROM dqflow_jobs AS j
    WHERE status IN ('completed', 'failed', 'cancelled')
      AND coalesce(completed_at, cancelled_at, last_failed_at) < %(before)s
      AND status = ANY(%(statuses)s::text[])
      AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
      AND NOT EXISTS (
          SELECT 1 FROM dqflow_job_dependencies AS d JOIN dqflow_jobs AS w ON w.id = d.job_id
          WHERE d.depends_on_id = j.id AND w.status = 'waiting')
    ORDER BY coalesce(completed_at, cancelled_at, last_failed_at)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
events AS (
    DELETE FROM dqflow_job_events WHERE job_id IN (SELECT id FROM doomed)
),
links AS (
    DELETE FROM dqflow_job_dependencies
    WHERE job_id IN (SELECT id FROM doomed) OR depends_on_id IN (SELECT id FROM doomed)
),
waits AS (
    DELETE FROM dqflow_job_waits WHERE job_id IN (SELECT id FROM doomed)
),
unique_keys AS (
    DELETE FROM dqflow_unique_keys WHERE job_id IN (SELECT id FROM doomed)
),
tokens AS (
    DELETE FROM dqflow_tokens WHERE job_id IN (SELECT id FROM doomed)
)
DELETE FROM dqflow_jobs WHERE id IN (SELECT id FROM doomed)
