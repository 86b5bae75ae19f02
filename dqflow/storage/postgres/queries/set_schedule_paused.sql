INSERT INTO dqflow_schedules AS s (name, paused) VALUES (%(name)s, %(paused)s)
ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()
RETURNING s.name, s.last_tick, s.last_job_id, s.paused
