-- Lock workflow runs and read their state (lock_runs.sql). After the runs (locked first:
-- the second part only runs once the first is read), `draw` more rows draw job ids ahead
-- of the insert (workflow_add_jobs_update_runs), their version NULL: a workflow's advance
-- names its new jobs in the run's step state, so their ids are drawn in the settle's first
-- round trip, and the insert and the run's new state go together with the commit. Ids
-- drawn and not used leave gaps, as a rolled-back insert does.
WITH $LOCK_RUNS
SELECT id, version, name, status, input, tags, steps FROM runs_locked
UNION ALL
SELECT nextval('dqflow_jobs_id_seq'), NULL, NULL, NULL, NULL, NULL, NULL
FROM generate_series(1, %(draw)s::int)
