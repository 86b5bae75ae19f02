-- Claim up to `limit` ready jobs: priority first, then run_at, then id.
-- ARGV: worker_id, limit, lease_ms, type count, types... (no types = every type).
-- Due delayed jobs of those types are promoted to their ready sets first.
-- Returns the claimed jobs' hashes (HGETALL form), in claim order.
local worker, limit, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local types = {}
for t = 1, tonumber(ARGV[4]) do types[t] = ARGV[4 + t] end
if #types == 0 then types = CALL('SMEMBERS', P .. ':types') end
local now = now_us()

for _, job_type in ipairs(types) do
  local delayed = P .. ':delayed:' .. job_type
  local due = CALL('ZRANGEBYSCORE', delayed, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
  if #due > 0 then
    local ready = P .. ':ready:' .. job_type
    for d = 1, #due, 2 do
      local id = due[d]
      local priority = CALL('HGET', job_key(id), 'priority')
      if priority then
        CALL('ZADD', ready, 0, rank(tonumber(priority), tonumber(due[d + 1]), tonumber(id)))
      end
      CALL('ZREM', delayed, id)
    end
  end
end

local picked = {}
if #types == 1 then
  local popped = CALL('ZPOPMIN', P .. ':ready:' .. types[1], limit)
  for p = 1, #popped, 2 do picked[#picked + 1] = popped[p] end
elseif #types > 1 then
  local candidates = {}
  local source = {}
  for _, job_type in ipairs(types) do
    for _, member in ipairs(CALL('ZRANGE', P .. ':ready:' .. job_type, 0, limit - 1)) do
      candidates[#candidates + 1] = member
      source[member] = job_type
    end
  end
  table.sort(candidates)
  for c = 1, math.min(limit, #candidates) do
    local member = candidates[c]
    CALL('ZREM', P .. ':ready:' .. source[member], member)
    picked[#picked + 1] = member
  end
end

local now_s = fmt(now)
local expires = now + lease_ms * 1000
local expires_s = fmt(expires)
local worker_json = cjson.encode(worker)
local out = {}
for _, member in ipairs(picked) do
  local id = rank_id(member)
  id = fmt(tonumber(id))
  local key = job_key(id)
  if CALL('HGET', key, 'status') == 'pending' then
    local attempts = CALL('HINCRBY', key, 'attempts', 1)
    CALL('HINCRBY', key, 'lease_token', 1)
    CALL('HSET', key, 'status', 'processing', 'locked_by', worker, 'locked_at', now_s,
      'lease_expires_at', expires_s, 'started_at', now_s, 'updated_at', now_s)
    move_status(id, 'pending', 'processing')
    CALL('ZADD', P .. ':processing', expires, id)
    add_event(id, 'processing', now, '{"worker_id":' .. worker_json .. ',"attempt":' .. fmt(attempts) .. '}')
    out[#out + 1] = CALL('HGETALL', key)
  end
end
return out
