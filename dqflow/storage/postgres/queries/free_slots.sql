-- A fragment, not a statement: the CTEs that give back the concurrency slots of the
-- jobs in a CTE named `left_processing` (columns key, job_type: jobs this statement
-- took out of processing; key NULL for a job without a concurrency key), and wake the
-- workers of their types (a held-back job of that key may be claimable now). Pasted
-- where a statement says $FREE_SLOTS. Slot rows are locked in key order, as the claim
-- locks them, so the two cannot deadlock.
freed_counts AS (
    SELECT key, count(*) AS n FROM left_processing WHERE key IS NOT NULL GROUP BY key
),
freed_locks AS (
    SELECT s.key
    FROM dqflow_concurrency_slots AS s JOIN freed_counts ON freed_counts.key = s.key
    ORDER BY s.key
    FOR UPDATE OF s
),
slots_freed AS (
    UPDATE dqflow_concurrency_slots AS s
    SET active = greatest(s.active - freed_counts.n, 0)
    FROM freed_counts JOIN freed_locks ON freed_locks.key = freed_counts.key
    WHERE s.key = freed_counts.key
    RETURNING s.key
),
slots_woken AS (
    SELECT count(pg_notify(%(channel)s, job_type)) AS notified
    FROM (SELECT DISTINCT job_type FROM left_processing WHERE key IS NOT NULL) AS types
)
