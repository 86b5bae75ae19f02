-- retention.events: the history of up to %(limit)s jobs that finished before %(before)s, taken
-- by finish time after the kept position (dqflow_cleanup_state 'events'), which moves forward.
WITH kept AS (
    SELECT position FROM dqflow_cleanup_state WHERE name = 'events'
),
visited AS (
    SELECT id, coalesce(completed_at, cancelled_at, last_failed_at) AS finished FROM dqflow_jobs
    WHERE status IN ('completed', 'failed', 'cancelled')
      AND coalesce(completed_at, cancelled_at, last_failed_at) < %(before)s
      AND coalesce(completed_at, cancelled_at, last_failed_at) > coalesce((SELECT position FROM kept), '-infinity')
    ORDER BY coalesce(completed_at, cancelled_at, last_failed_at)
    LIMIT %(limit)s
),
gone AS (
    DELETE FROM dqflow_job_events WHERE job_id IN (SELECT id FROM visited)
),
moved AS (
    INSERT INTO dqflow_cleanup_state AS c (name, position)
    SELECT 'events', max(finished) FROM visited HAVING count(*) > 0
    ON CONFLICT (name) DO UPDATE SET position = greatest(c.position, EXCLUDED.position)
)
SELECT count(*) AS count FROM visited
