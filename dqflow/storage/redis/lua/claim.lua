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
local event_id = CALL('INCRBY', P .. ':event_id', #picked) - #picked
local claimed, leases, out = {}, {}, {}
for _, member in ipairs(picked) do
  local id = fmt(tonumber(rank_id(member)))
  local key = job_key(id)
  local job = CALL('HGETALL', key)
  local status, attempts, token, earlier = nil, 1, 1, false
  for k = 1, #job, 2 do
    local name = job[k]
    if name == 'status' then status = job[k + 1]
    elseif name == 'attempts' then attempts = tonumber(job[k + 1]) + 1
    elseif name == 'lease_token' then token = tonumber(job[k + 1]) + 1
    elseif name == 'output' or name == 'progress' then earlier = true
    end
  end
  if status == 'pending' then
    if earlier then
      -- a new attempt starts without the output and progress of an earlier one
      CALL('HDEL', key, 'output', 'progress')
      local kept = {}
      for k = 1, #job, 2 do
        if job[k] ~= 'output' and job[k] ~= 'progress' then
          kept[#kept + 1] = job[k]
          kept[#kept + 1] = job[k + 1]
        end
      end
      job = kept
    end
    local changes = {'status', 'processing', 'attempts', fmt(attempts), 'lease_token', fmt(token),
      'locked_by', worker, 'locked_at', now_s, 'lease_expires_at', expires_s, 'started_at', now_s,
      'updated_at', now_s}
    CALL('HSET', key, unpack(changes))
    event_id = event_id + 1
    local entry = event_json(event_id, 'processing', now,
      '{"worker_id":' .. worker_json .. ',"attempt":' .. changes[4] .. '}')
    CALL('RPUSH', P .. ':events:' .. id, entry)
    feed(id, 'event', entry)
    claimed[#claimed + 1] = id
    leases[#leases + 1] = expires
    leases[#leases + 1] = id
    -- the reply is the hash before the claim plus the changed fields after it: read as
    -- name/value pairs in order, the later value of a repeated name wins
    for c = 1, #changes do job[#job + 1] = changes[c] end
    out[#out + 1] = job
  end
end
if #claimed > 0 then
  zrem_all(P .. ':status:pending', claimed)
  local by_status = {}
  for _, id in ipairs(claimed) do batch_add(by_status, P .. ':status:processing', tonumber(id), id) end
  by_status[P .. ':processing'] = leases
  flush_zadd(by_status)
end
return out
