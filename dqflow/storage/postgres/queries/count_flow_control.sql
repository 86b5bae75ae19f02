-- Storage.count_flow_control (dqflow stats): the concurrency-slot and rate-window rows kept.
SELECT (SELECT count(*) FROM dqflow_concurrency_slots) AS slot_keys,
       (SELECT count(*) FROM dqflow_rate_windows) AS rate_windows
