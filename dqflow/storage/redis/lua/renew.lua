-- Extend leases still held. ARGV: lease_ms, count, then id, lease_token pairs.
-- Returns the ids still held (processing under that token).
local now = now_us()
local expires = now + tonumber(ARGV[1]) * 1000
local expires_s = fmt(expires)
local out = {}
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = job_key(id)
  local job = CALL('HMGET', key, 'status', 'lease_token')
  if job[1] == 'processing' and job[2] == token then
    CALL('HSET', key, 'lease_expires_at', expires_s)
    CALL('ZADD', P .. ':processing', expires, id)
    out[#out + 1] = id
  end
  i = i + 2
end
return out
