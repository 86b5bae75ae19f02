-- Fenced completion. ARGV: count, then per job: id, lease_token, has_output (1/0), output.
-- Returns 1 (applied) or 0 (rejected: not processing under that token) per job.
local now = now_us()
local now_s = fmt(now)
local count = tonumber(ARGV[1])
local event_id = CALL('INCRBY', P .. ':event_id', count) - count
local done, zsets, out = {}, {}, {}
local i = 2
for n = 1, count do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = job_key(id)
  local job = CALL('HMGET', key, 'status', 'lease_token')
  if job[1] == 'processing' and job[2] == token then
    if ARGV[i + 2] == '1' then
      CALL('HSET', key, 'status', 'completed', 'completed_at', now_s, 'updated_at', now_s, 'output', ARGV[i + 3])
    else
      CALL('HSET', key, 'status', 'completed', 'completed_at', now_s, 'updated_at', now_s)
    end
    CALL('HDEL', key, 'lease_expires_at')
    event_id = event_id + 1
    CALL('RPUSH', P .. ':events:' .. id, event_json(event_id, 'completed', now, nil))
    done[#done + 1] = id
    batch_add(zsets, P .. ':status:completed', tonumber(id), id)
    out[n] = 1
  else
    out[n] = 0
  end
  i = i + 4
end
if #done > 0 then
  zrem_all(P .. ':processing', done)
  zrem_all(P .. ':status:processing', done)
  flush_zadd(zsets)
end
return out
