-- claim_tick: the tick claimed, and the job of the schedule's last run.
UPDATE dqflow_schedules
SET last_tick = %(tick)s, last_job_id = %(job_id)s, updated_at = now()
WHERE name = %(name)s
