-- Fenced: append the step member %(member)s ('"name":{"result":...,"completed_at":...}')
-- to the job's steps, as text, so results keep their JSON exactly as written.
UPDATE dqflow_jobs
SET steps = (CASE WHEN steps::text = '{}' THEN '{' || %(member)s::text || '}'
                  ELSE left(steps::text, -1) || ',' || %(member)s::text || '}' END)::json,
    updated_at = now()
WHERE id = %(job_id)s AND status = 'processing' AND lease_token = %(lease_token)s
RETURNING id
