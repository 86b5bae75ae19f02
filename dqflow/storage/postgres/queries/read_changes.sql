-- The change feed after a (txid, id) cursor, only from transactions older than every
-- running one (their rows are final: nothing can still appear before them).
SELECT c.txid::text AS txid, c.id, c.job_id, j.job_type, c.kind, c.created_at, c.data
FROM dqflow_job_changes c
JOIN dqflow_jobs j ON j.id = c.job_id
WHERE (c.txid, c.id) > (%(txid)s::xid8, %(id)s::bigint)
  AND c.txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY c.txid, c.id
LIMIT %(limit)s
