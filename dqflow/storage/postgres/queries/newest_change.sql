-- The cursor of the newest change, and the schema whose channel announces new ones.
SELECT (SELECT coalesce(max(id), 0) FROM dqflow_job_changes) AS cursor,
       (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = 'dqflow_job_changes'::regclass) AS schema
