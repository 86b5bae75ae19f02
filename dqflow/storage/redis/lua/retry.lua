-- Put a failed or cancelled job back to pending, runnable now: attempts 0; failure
-- reason, progress, output, lease and finish times cleared; token bumped. ARGV: id.
-- Returns {'ok', hash} | {'missing'} | {'state', status}.
local id = ARGV[1]
local key = job_key(id)
local job = CALL('HMGET', key, 'status', 'job_type', 'priority')
local status = job[1]
if not status then return {'missing'} end
if status ~= 'failed' and status ~= 'cancelled' then return {'state', status} end
local now = now_us()
local now_s = fmt(now)
CALL('HINCRBY', key, 'lease_token', 1)
CALL('HSET', key, 'status', 'pending', 'attempts', '0', 'run_at', now_s, 'last_retried_at', now_s,
  'updated_at', now_s)
CALL('HDEL', key, 'failure_reason', 'progress', 'output', 'completed_at', 'cancelled_at', 'started_at',
  'locked_by', 'locked_at', 'lease_expires_at')
move_status(id, status, 'pending')
enqueue(id, job[2], tonumber(job[3]), now, now)
wake(job[2], 1)
add_event(id, 'retried', now, '{"previous_status":"' .. status .. '"}')
return {'ok', CALL('HGETALL', key)}
