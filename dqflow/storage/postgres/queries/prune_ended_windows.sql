-- Storage.prune_flow_control, windows, second (under lock_rate_windows.sql): delete up to
-- %(limit)s rate windows that have ended. A claim that finds no row starts a fresh window
-- (claim_jobs.sql), exactly as it would with the ended row.
DELETE FROM dqflow_rate_windows
WHERE key IN (SELECT key FROM dqflow_rate_windows WHERE window_end <= now() ORDER BY key LIMIT %(limit)s)
