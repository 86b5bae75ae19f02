-- claim_tick: the schedule's row, created if new and locked until the transaction
-- ends (so one worker at a time decides a tick), with the status of its last run's job.
INSERT INTO dqflow_schedules AS s (name) VALUES (%(name)s)
ON CONFLICT (name) DO UPDATE SET name = s.name
RETURNING s.last_tick, s.last_job_id, s.paused,
    (SELECT j.status FROM dqflow_jobs AS j WHERE j.id = s.last_job_id) AS last_status
