-- Make pending the waiting durable jobs whose wake time (P:waits, score = wake_at in us)
-- is due: a `ready` event, workers woken; a token wait's pending token is marked expired
-- in the same step. Members whose job no longer waits (cancelled) are dropped.
-- ARGV: most jobs to wake. Returns how many woke.
local now = now_us()
local now_s = fmt(now)
local due = CALL('ZRANGEBYSCORE', P .. ':waits', '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local woken = 0
for _, id in ipairs(due) do
  CALL('ZREM', P .. ':waits', id)
  local key = job_key(id)
  local job = CALL('HMGET', key, 'status', 'wait', 'job_type', 'priority')
  if job[1] == 'waiting' and job[2] then
    local token_id = cjson.decode(job[2]).token_id
    CALL('HSET', key, 'status', 'pending', 'run_at', now_s, 'updated_at', now_s)
    CALL('HDEL', key, 'wait', 'wake_at')
    move_status(id, 'waiting', 'pending')
    enqueue(id, job[3], tonumber(job[4]), now, now)
    wake(job[3], 1)
    if type(token_id) == 'string' then
      local tkey = P .. ':token:' .. token_id
      if CALL('HGET', tkey, 'status') == 'pending' then CALL('HSET', tkey, 'status', 'expired') end
      add_event(id, 'ready', now, '{"token_id":' .. cjson.encode(token_id) .. ',"reason":"token_timeout"}')
    else
      add_event(id, 'ready', now, '{"reason":"sleep_ended"}')
    end
    woken = woken + 1
  end
end
return woken
