-- Fenced completion. ARGV: count, then per job: id, lease_token, has_output (1/0), output.
-- Returns 1 (applied) or 0 (rejected: not processing under that token) per job.
local now = now_us()
local now_s = fmt(now)
local out = {}
local i = 2
for n = 1, tonumber(ARGV[1]) do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = job_key(id)
  local job = CALL('HMGET', key, 'status', 'lease_token')
  if job[1] == 'processing' and job[2] == token then
    CALL('HSET', key, 'status', 'completed', 'completed_at', now_s, 'updated_at', now_s)
    if ARGV[i + 2] == '1' then CALL('HSET', key, 'output', ARGV[i + 3]) end
    CALL('HDEL', key, 'lease_expires_at')
    CALL('ZREM', P .. ':processing', id)
    move_status(id, 'processing', 'completed')
    add_event(id, 'completed', now, nil)
    out[n] = 1
  else
    out[n] = 0
  end
  i = i + 4
end
return out
