-- Layout 2 upgrade (redis/_layout.py): put finished jobs that are missing from P:finished
-- (finished under layout 1, before the index existed) into it, scored by their finish time,
-- so clean-up and retention find them. ARGV: job ids (a batch read from P:status:<status>
-- by ZSCAN). Idempotent: a job already indexed keeps its score (ZADD NX), a job that is no
-- longer finished or is gone is left alone. Returns how many were added.
local FINISHED_AT = {completed = 'completed_at', failed = 'last_failed_at', cancelled = 'cancelled_at'}
local added = 0
for _, id in ipairs(ARGV) do
  local status = CALL('HGET', job_key(id), 'status')
  local field = status and FINISHED_AT[status]
  if field then
    local job = CALL('HMGET', job_key(id), field, 'updated_at', 'created_at')
    local at = tonumber(job[1] or job[2] or job[3] or '0')
    added = added + CALL('ZADD', P .. ':finished', 'NX', fmt(at), id)
  end
end
return added
