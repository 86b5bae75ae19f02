-- Jobs per (job type, status), for dashboards and metrics.
SELECT job_type, status, count(*) AS count
FROM dqflow_jobs
GROUP BY job_type, status
