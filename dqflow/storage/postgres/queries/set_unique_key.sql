-- add_unique: the job just added is now the unique key's newest.
UPDATE dqflow_unique_keys SET job_id = %(job_id)s WHERE key = %(key)s
