-- Cancel a pending, waiting or processing job; bumps the lease token so a running
-- worker's writes are rejected (a processing job gives back its concurrency slot); its
-- waiting dependents are cancelled too. ARGV: id.
-- Returns {'ok', hash} | {'missing'} | {'state', status}.
local id = ARGV[1]
local key = job_key(id)
local job = CALL('HMGET', key, 'status', 'job_type', 'priority', 'run_at')
local status = job[1]
if not status then return {'missing'} end
if status ~= 'pending' and status ~= 'waiting' and status ~= 'processing' then
  return {'state', status}
end
local now = now_us()
local now_s = fmt(now)
if status == 'pending' then
  dequeue(id, job[2], tonumber(job[3]), tonumber(job[4]))
elseif status == 'processing' then
  CALL('ZREM', P .. ':processing', id)
  free_slot(id)
end
CALL('HINCRBY', key, 'lease_token', 1)
CALL('HSET', key, 'status', 'cancelled', 'cancelled_at', now_s, 'updated_at', now_s)
CALL('HDEL', key, 'lease_expires_at')
move_status(id, status, 'cancelled')
add_event(id, 'cancelled', now, '{"previous_status":"' .. status .. '"}')
cancel_dependents(id, now)
return {'ok', CALL('HGETALL', key)}
