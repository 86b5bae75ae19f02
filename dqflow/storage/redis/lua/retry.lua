-- Put a failed or cancelled job back to pending, runnable now: attempts 0; failure
-- reason, progress, output, wait, lease and finish times cleared; token bumped. ARGV: id,
-- reset_steps ('1': a durable handler's completed steps are cleared too; else kept).
-- A job added with depends_on whose dependencies have not all completed goes back to
-- waiting instead; one of them failed or cancelled refuses the retry.
-- Returns {'ok', hash} | {'missing'} | {'state', status} | {'dependency', id, status ('' = none)}.
local id = ARGV[1]
local key = job_key(id)
local job = CALL('HMGET', key, 'status', 'job_type', 'priority')
local status = job[1]
if not status then return {'missing'} end
if status ~= 'failed' and status ~= 'cancelled' then return {'state', status} end
local waits = false
for _, dependency in ipairs(CALL('SMEMBERS', P .. ':depends_on:' .. id)) do
  local dependency_status = CALL('HGET', job_key(dependency), 'status')
  if not dependency_status or dependency_status == 'failed' or dependency_status == 'cancelled' then
    return {'dependency', dependency, dependency_status or ''}
  end
  if dependency_status ~= 'completed' then waits = true end
end
local now = now_us()
local now_s = fmt(now)
CALL('HINCRBY', key, 'lease_token', 1)
CALL('HSET', key, 'status', waits and 'waiting' or 'pending', 'attempts', '0', 'run_at', now_s, 'last_retried_at', now_s,
  'updated_at', now_s)
CALL('HDEL', key, 'failure_reason', 'progress', 'output', 'completed_at', 'cancelled_at', 'started_at',
  'locked_by', 'locked_at', 'lease_expires_at', 'wait', 'wake_at')
if ARGV[2] == '1' then CALL('HDEL', key, 'steps') end
CALL('ZREM', P .. ':waits', id)
if waits then
  move_status(id, status, 'waiting')
else
  move_status(id, status, 'pending')
  enqueue(id, job[2], tonumber(job[3]), now, now)
  wake(job[2], 1)
end
add_event(id, 'retried', now, '{"previous_status":"' .. status .. '"}')
return {'ok', CALL('HGETALL', key)}
