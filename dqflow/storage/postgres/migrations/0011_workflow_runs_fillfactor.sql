-- dqflow 0011: room on each page of dqflow_workflow_runs for a run's next version. Every
-- step that ends rewrites its run's row (the step state, the version); with full pages each
-- rewrite went to another page and added an entry to every index of the table. With half
-- of each page left free, the rewrites of a running run stay on its page and skip the
-- indexes (a HOT update: none of the indexed columns changes until the run ends), and the
-- page's dead versions are pruned as it fills. Applies to pages written from now on.
ALTER TABLE dqflow_workflow_runs SET (fillfactor = 50);
