-- The cursor of the newest final change, and the schema whose channel announces new ones.
SELECT (SELECT txid::text || ':' || id FROM dqflow_job_changes
        WHERE txid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY txid DESC, id DESC LIMIT 1) AS cursor,
       (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = 'dqflow_job_changes'::regclass) AS schema
