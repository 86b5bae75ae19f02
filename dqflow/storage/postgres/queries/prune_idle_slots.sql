-- Storage.prune_flow_control, slots: delete up to %(limit)s concurrency-slot rows that no job
-- holds (active = 0). Each row is locked first, skipping rows a claim or a completion holds;
-- the lock re-reads the latest version, so a row a claim raised meanwhile is kept. A claim
-- that finds no row inserts one (claim_jobs.sql): a deleted row reads as a key with every
-- slot free, which it is. Never waits for a lock, so it cannot deadlock with a claim.
WITH idle AS (
    SELECT key FROM dqflow_concurrency_slots
    WHERE active <= 0
    ORDER BY key
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM dqflow_concurrency_slots AS s
USING idle
WHERE s.key = idle.key AND s.active <= 0
