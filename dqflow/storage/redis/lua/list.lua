-- One step of list_jobs (read-only): newest first, below an id, through the indexes.
-- ARGV: top (ids below it; '+inf' = no cursor), created_after_us, created_before_us ('' = none),
-- want, max_scan, status count, statuses..., job type ('' = any, else '=' .. type),
-- tag mode ('' = no tag filter; all/any/none/exact), tagset signature, tag count, tags...
--
-- The walk is driven by the smallest index that must contain every match (a status,
-- type, tag or exact-tagset set, or all jobs) within the id range; created_at maps to
-- an id range because ids and created_at grow together. Other filters are checked per
-- candidate with O(1)/O(log n) look-ups. At most max_scan candidates are looked at.
-- Returns {state, resume, scanned, job hashes...}: state 0 = index exhausted, 1 = `want`
-- found, 2 = scan budget spent (call again with top = resume); scanned = candidates looked at.
local top, after, before = ARGV[1], ARGV[2], ARGV[3]
local want, max_scan = tonumber(ARGV[4]), tonumber(ARGV[5])
local statuses, status_set = {}, {}
local i = 7
for _ = 1, tonumber(ARGV[6]) do
  statuses[#statuses + 1] = ARGV[i]
  status_set[ARGV[i]] = true
  i = i + 1
end
local job_type = nil
if ARGV[i] ~= '' then job_type = string.sub(ARGV[i], 2) end
local mode, tagset = ARGV[i + 1], ARGV[i + 2]
local tags = {}
for t = 1, tonumber(ARGV[i + 3]) do tags[t] = ARGV[i + 3 + t] end
if #tags == 0 then mode = '' end

local hi = math.huge
if top ~= '+inf' then hi = tonumber(top) end
local lo = 1

-- first id whose created_at >= t (nil when none): binary search over the id-ordered set
local all = P .. ':jobs'
local function first_created_at_or_after(t)
  local a, b = 0, CALL('ZCARD', all)
  local n = b
  while a < b do
    local mid = math.floor((a + b) / 2)
    local id = CALL('ZRANGE', all, mid, mid)[1]
    local created = tonumber(CALL('HGET', job_key(id), 'created_at') or '0')
    if created >= t then b = mid else a = mid + 1 end
  end
  if a >= n then return nil end
  return tonumber(CALL('ZRANGE', all, a, a)[1])
end
if after ~= '' then
  local first = first_created_at_or_after(tonumber(after))
  if first == nil then return {0, 0, 0} end
  lo = first
end
if before ~= '' then
  local first = first_created_at_or_after(tonumber(before))
  if first ~= nil and first < hi then hi = first end
end
if lo >= hi then return {0, 0, 0} end

local hi_arg = '(' .. (hi == math.huge and '+inf' or fmt(hi))
local lo_arg = fmt(lo)
local function cost(keys)
  local c = 0
  for _, k in ipairs(keys) do c = c + CALL('ZCOUNT', k, lo_arg, hi_arg) end
  return c
end

-- candidate drivers: each a list of sets whose union holds every match
local drivers = {}
if #statuses > 0 then
  local keys = {}
  for _, s in ipairs(statuses) do keys[#keys + 1] = P .. ':status:' .. s end
  drivers[#drivers + 1] = keys
end
if job_type then drivers[#drivers + 1] = {P .. ':type:' .. job_type} end
if mode == 'all' then
  for _, tag in ipairs(tags) do drivers[#drivers + 1] = {P .. ':tag:' .. tag} end
elseif mode == 'any' then
  local keys = {}
  for _, tag in ipairs(tags) do keys[#keys + 1] = P .. ':tag:' .. tag end
  drivers[#drivers + 1] = keys
elseif mode == 'exact' then
  drivers[#drivers + 1] = {P .. ':tagset:' .. tagset}
end
if #drivers == 0 then drivers[1] = {all} end
local driver, best = nil, nil
for _, keys in ipairs(drivers) do
  local c = cost(keys)
  if best == nil or c < best then driver, best = keys, c end
end
if best == 0 then return {0, 0, 0} end

local function matches(id)
  if #statuses > 0 or job_type then
    local job = CALL('HMGET', job_key(id), 'status', 'job_type')
    if not job[1] then return false end
    if #statuses > 0 and not status_set[job[1]] then return false end
    if job_type and job[2] ~= job_type then return false end
  end
  if mode == 'all' then
    for _, tag in ipairs(tags) do
      if not CALL('ZSCORE', P .. ':tag:' .. tag, id) then return false end
    end
  elseif mode == 'any' then
    local found = false
    for _, tag in ipairs(tags) do
      if CALL('ZSCORE', P .. ':tag:' .. tag, id) then found = true break end
    end
    if not found then return false end
  elseif mode == 'none' then
    for _, tag in ipairs(tags) do
      if CALL('ZSCORE', P .. ':tag:' .. tag, id) then return false end
    end
  elseif mode == 'exact' then
    if not CALL('ZSCORE', P .. ':tagset:' .. tagset, id) then return false end
  end
  return true
end

local BATCH = 128
local out = {0, 0, 0}
local found, scanned = 0, 0
local upper = hi_arg
while true do
  -- fetch the next batch from every driver set; ids at or above `floor` are complete
  local merged, floor, full = {}, -1, false
  for _, k in ipairs(driver) do
    local batch = CALL('ZREVRANGEBYSCORE', k, upper, lo_arg, 'LIMIT', 0, BATCH)
    for _, id in ipairs(batch) do merged[#merged + 1] = tonumber(id) end
    if #batch == BATCH then
      full = true
      local last = tonumber(batch[#batch])
      if last > floor then floor = last end
    end
  end
  table.sort(merged, function(a, b) return a > b end)
  local previous = nil
  for _, id in ipairs(merged) do
    if full and id < floor then break end
    if id ~= previous then
      previous = id
      if scanned >= max_scan then
        out[1], out[2], out[3] = 2, id + 1, scanned
        return out
      end
      scanned = scanned + 1
      local ids = fmt(id)
      if matches(ids) then
        out[#out + 1] = CALL('HGETALL', job_key(ids))
        found = found + 1
        if found >= want then
          out[1], out[2], out[3] = 1, id, scanned
          return out
        end
      end
    end
  end
  if not full then
    out[3] = scanned
    return out
  end
  upper = '(' .. fmt(floor)
end
