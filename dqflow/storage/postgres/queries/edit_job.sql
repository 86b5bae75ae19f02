-- Change fields of a pending job: each `set_<column>` flag says whether that
-- column changes (the SET list gets one assignment per editable job option, see
-- _queries.py). Records an `edited` event and wakes workers (run_at
-- may now be earlier). Answers like cancel_job.
WITH target AS (
    SELECT id, status FROM dqflow_jobs WHERE id = %(job_id)s FOR UPDATE
),
edited AS (
    UPDATE dqflow_jobs AS j
    SET $EDIT_ASSIGNMENTS,
        updated_at = now()
    FROM target
    WHERE j.id = target.id AND target.status = 'pending'
    RETURNING j.*
),
event AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at, data)
    SELECT id, 'edited', now(), jsonb_build_object('fields', %(fields)s::jsonb) FROM edited
),
woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified FROM edited
)
SELECT target.status AS previous_status, edited.*
FROM target LEFT JOIN edited ON true CROSS JOIN woken
