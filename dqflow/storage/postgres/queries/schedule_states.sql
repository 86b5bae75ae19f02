SELECT name, last_tick, last_job_id, paused FROM dqflow_schedules
