-- Fenced: store the token's step (as save_step.sql) and insert the pending token, in one
-- statement; answers the job id when the job was still held (no row: nothing stored).
WITH step AS (
    UPDATE dqflow_jobs
    SET steps = (CASE WHEN steps::text = '{}' THEN '{' || %(member)s::text || '}'
                      ELSE left(steps::text, -1) || ',' || %(member)s::text || '}' END)::json,
        updated_at = now()
    WHERE id = %(job_id)s AND status = 'processing' AND lease_token = %(lease_token)s
    RETURNING id
),
token AS (
    INSERT INTO dqflow_tokens (id, job_id, status, signal, schema, timeout_at)
    SELECT %(token_id)s::text, id, 'pending', %(signal)s::text, %(schema)s::jsonb, %(timeout_at)s::timestamptz
    FROM step
)
SELECT id FROM step
