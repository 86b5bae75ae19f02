-- Complete a batch of jobs, fenced on status and lease token; a NULL output
-- keeps the stored one. Answers the ids that applied; each gets a `completed` event.
WITH input AS (
    SELECT * FROM unnest(%(job_id)s::bigint[], %(lease_token)s::bigint[], %(output)s::text[])
        AS t(job_id, lease_token, output)
),
completed AS (
    UPDATE dqflow_jobs AS j
    SET status = 'completed',
        output = coalesce(input.output::jsonb, j.output),
        completed_at = now(),
        updated_at = now(),
        lease_expires_at = NULL
    FROM input
    WHERE j.id = input.job_id AND j.status = 'processing' AND j.lease_token = input.lease_token
    RETURNING j.id
),
events AS (
    INSERT INTO dqflow_job_events (job_id, event_type, created_at)
    SELECT id, 'completed', now() FROM completed
)
SELECT id FROM completed
