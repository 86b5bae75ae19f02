-- Draw more job ids ahead of the insert (add_jobs_drawn) when the ones the runs' lock drew
-- (workflow_lock_runs.sql) are too few for an advance's new jobs (a fan-out). Ids drawn and
-- not used leave gaps, as a rolled-back insert does.
SELECT nextval('dqflow_jobs_id_seq') FROM generate_series(1, %(count)s::int)
