-- Insert jobs. Jobs of one call usually share everything but their payload, so the
-- arguments are a table of distinct "specs" followed by two values per job:
-- ARGV: spec count, then per spec: job_type, priority, run_at ('' = now), tags_json,
-- tagset signature, tag count, tags..., then a count of plain fields and their
-- name/value pairs (every other job option, stored as given; absent ones are null
-- or empty); then job count, then per job: spec number (1-based) optionally
-- followed by '=' .. idempotency key, and the payload; then, optionally, the jobs with
-- dependencies (depends_on): their count, then per job its number (1-based), the count
-- of its dependencies and their ids.
-- Returns id, created (1/0) per job, in input order; or, when a dependency does not
-- exist or is failed or cancelled, -1, the job's index (0-based), the dependency and
-- its status ('' = none), having written nothing.
-- A job with unfinished dependencies is stored waiting (in no ready set); P:depends_on:<id>
-- holds those dependencies and P:dependents:<dependency> the jobs waiting for it.
local now = now_us()
-- created_at never goes backwards, so ids and created_at sort alike (list_jobs relies on it)
local last = tonumber(CALL('GET', P .. ':clock') or '0')
if now < last then now = last end
local now_s = fmt(now)
CALL('SET', P .. ':clock', now_s)
local next_id = tonumber(CALL('GET', P .. ':id') or '0')
local next_event = tonumber(CALL('GET', P .. ':event_id') or '0')

-- index entries, written with one ZADD per key at the end
local zsets = {}
local all_ids, pending = {}, {}
zsets[P .. ':jobs'] = all_ids
zsets[P .. ':status:pending'] = pending
local per_type = {} -- job_type -> {type index, ready entries, delayed entries, ready count}

local specs = {}
local i = 2
for s = 1, tonumber(ARGV[1]) do
  local job_type, priority, run_at_s = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local ntags = tonumber(ARGV[i + 5])
  local run_at, run_at_text = now, now_s
  if run_at_s ~= '' then run_at, run_at_text = tonumber(run_at_s), run_at_s end
  -- attempts, lease_token (0), error_history and tags ([]) stay absent until they change
  local fields = {'job_type', job_type, 'status', 'pending', 'priority', priority, 'run_at', run_at_text,
    'created_at', now_s, 'updated_at', now_s}
  local tag_keys = {}
  if ntags > 0 then
    fields[#fields + 1] = 'tags'
    fields[#fields + 1] = ARGV[i + 3]
    fields[#fields + 1] = 'tagset'
    fields[#fields + 1] = ARGV[i + 4]
    tag_keys[1] = P .. ':tagset:' .. ARGV[i + 4]
    for t = 1, ntags do tag_keys[t + 1] = P .. ':tag:' .. ARGV[i + 5 + t] end
    for _, key in ipairs(tag_keys) do
      if not zsets[key] then zsets[key] = {} end
    end
  end
  i = i + 6 + ntags
  local nplain = tonumber(ARGV[i])
  for f = i + 1, i + 2 * nplain do fields[#fields + 1] = ARGV[f] end
  i = i + 1 + 2 * nplain
  local tt = per_type[job_type]
  if not tt then
    tt = {{}, {}, {}, 0}
    per_type[job_type] = tt
    zsets[P .. ':type:' .. job_type] = tt[1]
    zsets[P .. ':ready:' .. job_type] = tt[2]
    zsets[P .. ':delayed:' .. job_type] = tt[3]
  end
  specs[s] = {
    fields = fields,
    tags = tag_keys,
    type = tt,
    run_at = run_at,
    due = run_at <= now,
    rank_head = string.format('%010d:%016d:', 2147483647 - tonumber(priority), run_at + 1000000000000000),
  }
end

local job_prefix = P .. ':job:'


-- every dependency is checked before anything is written: a bad one stores nothing
local unfinished_of = {}
local d = i + 2 * tonumber(ARGV[i]) + 1
for _ = 1, tonumber(ARGV[d] or '0') do
  local n, ndeps = tonumber(ARGV[d + 1]), tonumber(ARGV[d + 2])
  local unfinished = {}
  for k = d + 3, d + 2 + ndeps do
    local dep = ARGV[k]
    local status = CALL('HGET', job_prefix .. dep, 'status')
    if not status or status == 'failed' or status == 'cancelled' then
      return {-1, n - 1, tonumber(dep), status or ''}
    end
    if status ~= 'completed' then unfinished[#unfinished + 1] = dep end
  end
  if #unfinished > 0 then unfinished_of[n] = unfinished end
  d = d + 2 + ndeps
end

local out = {}
for n = 1, tonumber(ARGV[i]) do
  local head, payload = ARGV[i + 1], ARGV[i + 2]
  i = i + 2
  local idem = nil
  local cut = string.find(head, '=', 1, true)
  if cut then
    idem = string.sub(head, cut + 1)
    head = string.sub(head, 1, cut - 1)
  end
  local existing = false
  if idem then existing = CALL('HGET', P .. ':idempotency', idem) end
  if existing then
    out[#out + 1] = tonumber(existing)
    out[#out + 1] = 0
  else
    local spec = specs[tonumber(head)]
    next_id = next_id + 1
    local id = next_id
    local ids = fmt(id)
    local key = job_prefix .. ids
    next_event = next_event + 1
    -- the `added` event is the hash's added_event field (its id; time = created_at): one key
    -- per job fewer on the bulk path. Later events go to the job's events list.
    CALL('HSET', key, 'id', ids, 'payload', payload, 'added_event', fmt(next_event), unpack(spec.fields))
    if idem then
      CALL('HSET', key, 'idempotency_key', idem)
      CALL('HSET', P .. ':idempotency', idem, ids)
    end
    for _, tag_key in ipairs(spec.tags) do
      local entries = zsets[tag_key]
      entries[#entries + 1] = id
      entries[#entries + 1] = ids
    end
    local k = #all_ids
    all_ids[k + 1], all_ids[k + 2] = id, ids
    local tt = spec.type
    local by_type = tt[1]
    by_type[#by_type + 1] = id
    by_type[#by_type + 1] = ids
    local unfinished = unfinished_of[n]
    if unfinished then
      CALL('HSET', key, 'status', 'waiting')
      CALL('ZADD', P .. ':status:waiting', id, ids)
      CALL('SADD', P .. ':depends_on:' .. ids, unpack(unfinished))
      for _, dep in ipairs(unfinished) do CALL('SADD', P .. ':dependents:' .. dep, ids) end
    elseif spec.due then
      local p = #pending
      pending[p + 1], pending[p + 2] = id, ids
      local ready = tt[2]
      ready[#ready + 1] = 0
      ready[#ready + 1] = spec.rank_head .. string.format('%016d', id)
      tt[4] = tt[4] + 1
    else
      local p = #pending
      pending[p + 1], pending[p + 2] = id, ids
      local delayed = tt[3]
      delayed[#delayed + 1] = spec.run_at
      delayed[#delayed + 1] = ids
    end
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
for key, entries in pairs(zsets) do
  if #entries == 0 then zsets[key] = nil end
end
flush_zadd(zsets)

-- Hand ready jobs to idle workers (registered by claim.lua; _lib.lua's hand_to_idle).
local ready = {}
for job_type, tt in pairs(per_type) do ready[job_type] = tt[4] end
next_event = hand_to_idle(ready, now, now_s, next_event)

CALL('SET', P .. ':id', fmt(next_id))
CALL('SET', P .. ':event_id', fmt(next_event))
for job_type, tt in pairs(per_type) do
  CALL('SADD', P .. ':types', job_type)
  if ready[job_type] > 0 then wake(job_type, ready[job_type]) end
end
return out
