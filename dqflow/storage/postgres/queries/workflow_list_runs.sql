-- Runs newest first, keyset paged on the id.
SELECT * FROM dqflow_workflow_runs
WHERE (%(name)s::text IS NULL OR name = %(name)s::text)
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s
