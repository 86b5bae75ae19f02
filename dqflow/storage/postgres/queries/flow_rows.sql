-- A fragment, not a statement: the CTEs that create the concurrency-slot and
-- rate-window rows (claim_jobs.sql) of the keys of the jobs in a CTE named `input`,
-- with their first job. Pasted where a statement says $FLOW_ROWS.
slots AS (
    -- a concurrency key's slot row (claim_jobs.sql), created with its first job
    INSERT INTO dqflow_concurrency_slots (key)
    SELECT DISTINCT concurrency_key FROM input WHERE concurrency_key IS NOT NULL ORDER BY concurrency_key
    ON CONFLICT (key) DO NOTHING
),
rate_windows AS (
    -- a rate key's window row (claim_jobs.sql), created with its first job
    INSERT INTO dqflow_rate_windows (key)
    SELECT DISTINCT rate_key FROM input WHERE rate_key IS NOT NULL ORDER BY rate_key
    ON CONFLICT (key) DO NOTHING
)
