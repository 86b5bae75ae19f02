-- Storage.prune_flow_control, windows, first (in a transaction with a short lock_timeout):
-- SHARE conflicts with the ROW EXCLUSIVE lock every claim statement holds on this table from
-- its start, so this waits for the claims in flight and holds new ones back until commit:
-- no claim runs while windows are deleted, and a claim that began before this lock but
-- writes after it sees the clock past every deleted window's end (claim_jobs.sql then
-- gives it no start in a window it began in before the boundary).
LOCK TABLE dqflow_rate_windows IN SHARE MODE
