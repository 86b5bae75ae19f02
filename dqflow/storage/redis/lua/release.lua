-- Fenced hand-back of claimed jobs (shutdown). ARGV: count, then per job: id, lease_token,
-- started (1/0; 0 refunds the attempt). Pending again, runnable now; token bumped.
-- Returns 1 (applied) or 0 (rejected) per job.
local now = now_us()
local now_s = fmt(now)
local out = {}
local i = 2
for n = 1, tonumber(ARGV[1]) do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = job_key(id)
  local job = CALL('HMGET', key, 'status', 'lease_token', 'job_type', 'priority')
  if job[1] == 'processing' and job[2] == token then
    if ARGV[i + 2] ~= '1' then CALL('HINCRBY', key, 'attempts', -1) end
    CALL('HINCRBY', key, 'lease_token', 1)
    CALL('HSET', key, 'status', 'pending', 'run_at', now_s, 'updated_at', now_s)
    CALL('HDEL', key, unpack(LEASE_FIELDS))
    CALL('ZREM', P .. ':processing', id)
    move_status(id, 'processing', 'pending')
    enqueue(id, job[3], tonumber(job[4]), now, now)
    wake(job[3], 1)
    out[n] = 1
  else
    out[n] = 0
  end
  i = i + 3
end
return out
