-- claim_tick: the schedule's row, created if new and locked until the transaction ends (so
-- one worker at a time decides a tick). The job of its last run is read by the next
-- statement (job_status_age.sql), which sees what the lock's previous holder committed.
INSERT INTO dqflow_schedules AS s (name) VALUES (%(name)s)
ON CONFLICT (name) DO UPDATE SET name = s.name
RETURNING s.last_tick, s.last_job_id, s.paused
