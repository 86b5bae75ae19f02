-- Clean-up (Storage.delete_finished_jobs / count_finished_jobs): walk P:finished (finished
-- jobs by finish time, kept by move_status and settle.lua) from the oldest, up to ARGV[1]
-- (us, exclusive); no scan of the key space.
-- ARGV: before (us), limit, job type ('' = any), mode ('delete' | 'count'), offset (count
-- mode: where this page starts), then the statuses to take.
-- delete: deletes up to `limit` matching jobs (looking at no more than 10 x limit entries)
--   with their events, indexes, dependency links and wait tokens; returns {deleted, 0}.
-- count: looks at `limit` entries from `offset`; returns {matched, next offset (-1: done)}.
local before, limit, job_type, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local offset = tonumber(ARGV[5])
local wanted = {}
for k = 6, #ARGV do wanted[ARGV[k]] = true end
local finished = P .. ':finished'

-- a job a waiting dependent still needs is kept
local function needed(id)
  for _, dependent in ipairs(CALL('SMEMBERS', P .. ':dependents:' .. id)) do
    if CALL('HGET', job_key(dependent), 'status') == 'waiting' then return true end
  end
  return false
end

local function matches(id)
  local job = CALL('HMGET', job_key(id), 'status', 'job_type')
  if not job[1] then return nil end
  if not wanted[job[1]] or (job_type ~= '' and job[2] ~= job_type) then return false end
  return not needed(id)
end

-- the job's wait tokens: those it created (P:tokens:<id>), and those its steps name (tokens
-- created before that set was kept)
local function delete_tokens(id, steps)
  local tokens = CALL('SMEMBERS', P .. ':tokens:' .. id)
  if steps and string.find(steps, '"dqflow:token:', 1, true) then
    local ok, decoded = pcall(cjson.decode, steps)
    if ok and type(decoded) == 'table' then
      for name, entry in pairs(decoded) do
        local result = type(entry) == 'table' and entry.result
        if string.sub(name, 1, 13) == 'dqflow:token:' and type(result) == 'table' and type(result.token_id) == 'string' then
          tokens[#tokens + 1] = result.token_id
        end
      end
    end
  end
  for _, token_id in ipairs(tokens) do CALL('DEL', P .. ':token:' .. token_id) end
  CALL('DEL', P .. ':tokens:' .. id)
end

local function delete(id)
  local key = job_key(id)
  local job = CALL('HMGET', key, 'status', 'job_type', 'tags', 'tagset', 'idempotency_key', 'unique_key', 'steps')
  delete_tokens(id, job[7])
  if job[3] then
    for _, tag in ipairs(cjson.decode(job[3])) do CALL('ZREM', P .. ':tag:' .. tag, id) end
  end
  if job[4] then CALL('ZREM', P .. ':tagset:' .. job[4], id) end
  if job[5] then CALL('HDEL', P .. ':idempotency', job[5]) end
  if job[6] and CALL('HGET', P .. ':unique', job[6]) == id then CALL('HDEL', P .. ':unique', job[6]) end
  for _, dependent in ipairs(CALL('SMEMBERS', P .. ':dependents:' .. id)) do
    CALL('SREM', P .. ':depends_on:' .. dependent, id)
  end
  for _, dependency in ipairs(CALL('SMEMBERS', P .. ':depends_on:' .. id)) do
    CALL('SREM', P .. ':dependents:' .. dependency, id)
  end
  CALL('ZREM', P .. ':status:' .. job[1], id)
  CALL('ZREM', P .. ':type:' .. job[2], id)
  CALL('ZREM', P .. ':jobs', id)
  CALL('ZREM', finished, id)
  CALL('DEL', key, P .. ':events:' .. id, P .. ':dependents:' .. id, P .. ':depends_on:' .. id)
end

if mode == 'count' then
  local ids = CALL('ZRANGE', finished, '-inf', '(' .. fmt(before), 'BYSCORE', 'LIMIT', offset, limit)
  local matched = 0
  for _, id in ipairs(ids) do
    if matches(id) then matched = matched + 1 end
  end
  if #ids < limit then return {matched, -1} end
  return {matched, offset + #ids}
end

local deleted, looked, skip = 0, 0, 0
while deleted < limit and looked < 10 * limit do
  local ids = CALL('ZRANGE', finished, '-inf', '(' .. fmt(before), 'BYSCORE', 'LIMIT', skip, limit - deleted)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    looked = looked + 1
    local verdict = matches(id)
    if verdict == nil then
      CALL('ZREM', finished, id) -- its job is gone
    elseif verdict then
      delete(id)
      deleted = deleted + 1
    else
      skip = skip + 1
    end
  end
end
return {deleted, 0}
