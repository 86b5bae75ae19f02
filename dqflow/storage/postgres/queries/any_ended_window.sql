-- Storage.prune_flow_control, windows: is there a rate window that has ended (else the lock
-- of prune_ended_windows.sql is not taken)?
SELECT EXISTS (SELECT 1 FROM dqflow_rate_windows WHERE window_end <= now()) AS found
