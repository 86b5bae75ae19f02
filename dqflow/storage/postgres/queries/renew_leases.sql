-- Extend the leases still held (fenced on status and token); answers their ids.
UPDATE dqflow_jobs AS j
SET lease_expires_at = now() + %(lease_ms)s::bigint * interval '1 millisecond'
FROM unnest(%(job_id)s::bigint[], %(lease_token)s::bigint[]) AS held(job_id, lease_token)
WHERE j.id = held.job_id AND j.status = 'processing' AND j.lease_token = held.lease_token
RETURNING j.id
