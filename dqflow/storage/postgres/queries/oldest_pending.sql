-- The pending job added first (lowest id): how far behind the queue is (dqflow stats).
SELECT *
FROM dqflow_jobs
WHERE status = 'pending'
ORDER BY id
LIMIT 1
