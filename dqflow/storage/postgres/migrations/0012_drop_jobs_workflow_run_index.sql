-- dqflow 0012: no index of step jobs by run. No statement looks jobs up by their run (a
-- run's step state names its jobs' ids), yet every insert of a step job, and every update
-- of one that moves it to another page (its claim, its end), added an entry to it.
DROP INDEX IF EXISTS dqflow_jobs_workflow_run;
