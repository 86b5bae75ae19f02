-- Complete a batch of jobs, fenced on status and lease token; a NULL output
-- keeps the stored one; an earlier attempt's failure reason is cleared. Answers the ids that applied; each gets a `completed` event.
-- The batch is addressed by primary key (id = ANY) and each job's own values are
-- looked up by its position in the arrays: no join, so the plan is always a
-- primary-key lookup whatever the table's statistics say.
WITH completed AS (
    UPDATE dqflow_jobs AS j
    SET status = 'completed',
        output = coalesce(
            ((%(output)s::text[])[array_position(%(job_id)s::bigint[], j.id)])::json, j.output
        ),
        failure_reason = NULL,
        completed_at = now(),
        updated_at = now(),
        lease_expires_at = NULL
    WHERE j.id = ANY(%(job_id)s::bigint[])
      AND j.status = 'processing'
      AND j.lease_token = (%(lease_token)s::bigint[])[array_position(%(job_id)s::bigint[], j.id)]
    RETURNING j.id
),
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at)
    SELECT id, 'completed', now() FROM completed
)
SELECT id FROM completed
