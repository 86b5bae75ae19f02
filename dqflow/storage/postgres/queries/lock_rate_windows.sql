-- Storage.prune_flow_control, windows, first (in a transaction with a short lock_timeout):
-- SHARE conflicts with the ROW EXCLUSIVE lock every claim statement takes on this table from
-- its start, so this waits for the claims in flight and holds new ones back until commit.
-- A claim reads the clock (now()) when it starts; once the claims that started before this
-- transaction are done, no claim can see a window this transaction finds ended as still open.
LOCK TABLE dqflow_rate_windows IN SHARE MODE
