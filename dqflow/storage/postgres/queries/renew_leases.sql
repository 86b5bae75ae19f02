-- Extend the leases still held (fenced on status and token); answers their ids.
-- Addressed by primary key; each token sits at its job's position in the arrays.
UPDATE dqflow_jobs AS j
SET lease_expires_at = now() + %(lease_ms)s::bigint * interval '1 millisecond'
WHERE j.id = ANY(%(job_id)s::bigint[])
  AND j.status = 'processing'
  AND j.lease_token = (%(lease_token)s::bigint[])[array_position(%(job_id)s::bigint[], j.id)]
RETURNING j.id
