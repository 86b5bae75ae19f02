-- Seconds until the earliest pending job is due (negative: ready now; NULL: none pending).
-- A job held back by a concurrency key whose slots are all taken does not count (a
-- freed slot wakes the workers, free_slots.sql); one held back by a full rate window
-- is due when that window ends.
SELECT extract(epoch FROM min(
           CASE WHEN w.key IS NULL THEN c.run_at ELSE greatest(c.run_at, w.window_end) END) - now())::float8 AS due_in
FROM dqflow_jobs AS c
LEFT JOIN dqflow_rate_windows AS w
       ON w.key = c.rate_key AND w.window_end > now() AND w.starts >= c.rate_limit
WHERE c.status = 'pending'
  AND (%(job_types)s::text[] IS NULL OR c.job_type = ANY(%(job_types)s::text[]))
  AND (c.concurrency_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM dqflow_concurrency_slots AS full_slot
      WHERE full_slot.key = c.concurrency_key AND full_slot.active >= c.concurrency_limit))
