-- add_unique: the unique key's row, created if new (job_id 0: none yet) and locked until the
-- transaction ends, so one add at a time checks and inserts. Its job is read by the next
-- statement (job_status_age.sql): a new statement sees what the lock's previous holder committed.
INSERT INTO dqflow_unique_keys AS u (key, job_id) VALUES (%(key)s, 0)
ON CONFLICT (key) DO UPDATE SET key = u.key
RETURNING u.job_id
