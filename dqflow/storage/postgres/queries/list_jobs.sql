-- Filtered listing, newest first, keyset-paged on id. Run unprepared, so the
-- planner sees the actual values: absent filters fold away and the tag test of
-- the chosen mode can use the GIN index on tags.
SELECT *
FROM dqflow_jobs
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s::timestamptz)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s::timestamptz)
  AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s::bigint)
  AND CASE %(tag_mode)s::text
          WHEN 'all' THEN tags @> %(tags_json)s::jsonb
          WHEN 'any' THEN tags ?| %(tags)s::text[]
          WHEN 'none' THEN NOT (tags ?| %(tags)s::text[])
          WHEN 'exact' THEN tags @> %(tags_json)s::jsonb AND tags <@ %(tags_json)s::jsonb
          ELSE true
      END
ORDER BY id DESC
LIMIT %(limit)s
