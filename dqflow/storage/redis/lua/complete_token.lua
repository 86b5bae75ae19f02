-- Complete a wait token from outside. ARGV: token id, data (JSON, already validated).
-- Stores the data; if the token's job waits for it, makes the job pending now (a `ready`
-- event, workers woken). Returns {'ok', token hash} | {'missing'} | {'completed'} |
-- {'expired', job id} | {'finished', job id, job status}; nothing changes on an error.
local token_id = ARGV[1]
local tkey = P .. ':token:' .. token_id
local token = CALL('HMGET', tkey, 'status', 'job_id', 'timeout_at')
if not token[1] then return {'missing'} end
if token[1] == 'completed' then return {'completed'} end
local now = now_us()
if token[1] == 'expired' or (token[3] and tonumber(token[3]) <= now) then return {'expired', token[2]} end
local id = token[2]
local key = job_key(id)
local job = CALL('HMGET', key, 'status', 'wait', 'job_type', 'priority')
local status = job[1]
if status ~= 'pending' and status ~= 'processing' and status ~= 'waiting' then
  return {'finished', id, status or 'gone'}
end
local now_s = fmt(now)
CALL('HSET', tkey, 'status', 'completed', 'data', ARGV[2], 'completed_at', now_s)
if status == 'waiting' and job[2] and cjson.decode(job[2]).token_id == token_id then
  CALL('HSET', key, 'status', 'pending', 'run_at', now_s, 'updated_at', now_s)
  CALL('HDEL', key, 'wait', 'wake_at')
  CALL('ZREM', P .. ':waits', id)
  move_status(id, 'waiting', 'pending')
  enqueue(id, job[3], tonumber(job[4]), now, now)
  wake(job[3], 1)
  add_event(id, 'ready', now, '{"token_id":' .. cjson.encode(token_id) .. ',"reason":"token_completed"}')
end
return {'ok', CALL('HGETALL', tkey)}
