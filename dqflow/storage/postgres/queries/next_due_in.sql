-- Seconds until the earliest pending job is due (negative: ready now; NULL: none pending).
-- A job held back by a concurrency key whose slots are all taken does not count: a
-- freed slot wakes the workers (free_slots.sql).
SELECT extract(epoch FROM min(run_at) - now())::float8 AS due_in
FROM dqflow_jobs AS c
WHERE status = 'pending'
  AND (%(job_types)s::text[] IS NULL OR job_type = ANY(%(job_types)s::text[]))
  AND (c.concurrency_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM dqflow_concurrency_slots AS full_slot
      WHERE full_slot.key = c.concurrency_key AND full_slot.active >= c.concurrency_limit))
