-- Draw job ids ahead of the insert (add_jobs_drawn): a workflow's advance names its new
-- jobs in the run's step state, so their ids are drawn in the settle's first round trip,
-- and the insert and the run's new state go together with the commit. Ids drawn and not
-- used leave gaps, as a rolled-back insert does.
SELECT nextval('dqflow_jobs_id_seq') FROM generate_series(1, %(count)s::int)
