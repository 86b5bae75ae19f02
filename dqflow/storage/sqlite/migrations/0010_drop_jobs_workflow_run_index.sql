-- dqflow 0010: no index of step jobs by run. No statement looks jobs up by their run (a
-- run's step state names its jobs' ids), yet the insert of every step job wrote to it.
DROP INDEX IF EXISTS dqflow_jobs_workflow_run;
