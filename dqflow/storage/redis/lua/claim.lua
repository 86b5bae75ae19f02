-- Claim up to `limit` ready jobs: priority first, then run_at, then id.
-- ARGV: worker_id, limit, lease_ms, type count, types... (no types = every type), then
-- wait_ms ('' = do not wait).
-- First the worker stops being idle: jobs an add handed to it while it waited (already
-- claimed for it, in its inbox) come first. Due delayed jobs of its types are promoted
-- to their ready sets, then the best ready jobs are claimed. With wait_ms, a worker
-- that got nothing registers as idle for that long, so that the next add of one of its
-- types claims jobs for it and pushes them to its inbox (one round trip to start).
-- Returns the claimed jobs' hashes (HGETALL form), in claim order.
local worker, limit, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local requested = {}
for t = 1, tonumber(ARGV[4]) do requested[t] = ARGV[4 + t] end
local wait_ms = ARGV[5 + #requested]
local types = requested
if #types == 0 then types = CALL('SMEMBERS', P .. ':types') end
local now = now_us()

local out = {}
CALL('HDEL', P .. ':idle', worker)
local inbox = inbox_key(worker)
if CALL('EXISTS', inbox) == 1 then
  for _, batch in ipairs(CALL('LRANGE', inbox, 0, -1)) do
    for _, job in ipairs(cjson.decode(batch)) do out[#out + 1] = job end
  end
  CALL('DEL', inbox)
  limit = limit - #out
end

for _, job_type in ipairs(types) do
  local delayed = P .. ':delayed:' .. job_type
  local due = CALL('ZRANGEBYSCORE', delayed, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
  if #due > 0 then
    local ready = P .. ':ready:' .. job_type
    for d = 1, #due, 2 do
      local id = due[d]
      -- ranked by the job's own run_at: a job held back by a full rate window waits here
      -- until the window ends, with its run_at unchanged
      local job = CALL('HMGET', job_key(id), 'priority', 'run_at')
      if job[1] then
        CALL('ZADD', ready, 0, rank(tonumber(job[1]), tonumber(job[2]), tonumber(id)))
      end
      CALL('ZREM', delayed, id)
    end
  end
end

-- Remove and return the best `need` ready members of the worker's types, in claim order.
local function pick(need)
  local picked = {}
  if #types == 1 then
    local popped = CALL('ZPOPMIN', P .. ':ready:' .. types[1], need)
    for p = 1, #popped, 2 do picked[#picked + 1] = popped[p] end
  elseif #types > 1 then
    local candidates = {}
    local source = {}
    for _, job_type in ipairs(types) do
      for _, member in ipairs(CALL('ZRANGE', P .. ':ready:' .. job_type, 0, need - 1)) do
        candidates[#candidates + 1] = member
        source[member] = job_type
      end
    end
    table.sort(candidates)
    for c = 1, math.min(need, #candidates) do
      local member = candidates[c]
      CALL('ZREM', P .. ':ready:' .. source[member], member)
      picked[#picked + 1] = member
    end
  end
  return picked
end

local now_s = fmt(now)
local expires = now + lease_ms * 1000
local expires_s = fmt(expires)
local worker_json = cjson.encode(worker)
local claimed, leases = {}, {}
-- A job held back by its concurrency key is parked (out of the ready set) and the next
-- ones are picked in its place; each is looked at once, and a call looks at no more
-- than `budget` entries (the next claim goes on from there).
local budget = limit + 1000
local wanted = limit
while wanted > 0 and budget > 0 and #types > 0 do
  local picked = pick(math.min(wanted, budget))
  budget = budget - #picked
  local event_id = CALL('INCRBY', P .. ':event_id', #picked) - #picked
  local passed = false
  for _, member in ipairs(picked) do
    local id = fmt(tonumber(rank_id(member)))
    local job = claim_job(id, worker, worker_json, now, now_s, expires_s, event_id + 1, member)
    if job then
      event_id = event_id + 1
      claimed[#claimed + 1] = id
      leases[#leases + 1] = expires
      leases[#leases + 1] = id
      out[#out + 1] = job
      wanted = wanted - 1
    else
      passed = true
    end
  end
  if not passed then break end
end
if #claimed > 0 then
  zrem_all(P .. ':status:pending', claimed)
  local by_status = {}
  for _, id in ipairs(claimed) do batch_add(by_status, P .. ':status:processing', tonumber(id), id) end
  by_status[P .. ':processing'] = leases
  flush_zadd(by_status)
end
if #out == 0 and wait_ms ~= '' then
  CALL('HSET', P .. ':idle', worker, cjson.encode({
    ['until'] = now + (tonumber(wait_ms) + 1000) * 1000, lease = lease_ms, limit = limit, types = requested}))
end
return out
