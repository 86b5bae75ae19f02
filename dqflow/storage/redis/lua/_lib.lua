-- Helpers shared by every dqflow script (prepended to each one when it is loaded).
--
-- KEYS[1] is the queue's hash-tagged prefix, e.g. "{dqflow}". Every key a script
-- touches is built from it, so all of them hash to one Redis Cluster slot.
-- Times are integer microseconds since the epoch from the server's clock (TIME);
-- integers are always written with fmt() so they never turn into "1.7e+15".

local P = KEYS[1]
local CALL = redis.call

local function fmt(n)
  return string.format('%d', n)
end

local function now_us()
  local t = CALL('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function job_key(id)
  return P .. ':job:' .. id
end

-- Member of a ready set: byte order = priority descending, then run_at, then id.
-- All members score 0, so ZRANGE / ZPOPMIN return them in this order.
local function rank(priority, run_at, id)
  return string.format('%010d:%016d:%016d', 2147483647 - priority, run_at + 1000000000000000, id)
end

local function rank_id(member)
  return string.sub(member, 29)
end

-- Put a pending job in its type's ready set (due) or delayed set (run_at later).
local function enqueue(id, job_type, priority, run_at, now)
  if run_at <= now then
    CALL('ZADD', P .. ':ready:' .. job_type, 0, rank(priority, run_at, tonumber(id)))
    return true
  end
  CALL('ZADD', P .. ':delayed:' .. job_type, run_at, id)
  return false
end

local function dequeue(id, job_type, priority, run_at)
  CALL('ZREM', P .. ':ready:' .. job_type, rank(priority, run_at, tonumber(id)))
  CALL('ZREM', P .. ':delayed:' .. job_type, id)
end

-- P:finished indexes completed, failed and cancelled jobs by finish time (clean-up, prune.lua).
local FINISHED = {completed = true, failed = true, cancelled = true}

local function move_status(id, from, to)
  if from then
    CALL('ZREM', P .. ':status:' .. from, id)
    if FINISHED[from] then CALL('ZREM', P .. ':finished', id) end
  end
  CALL('ZADD', P .. ':status:' .. to, id, id)
  if FINISHED[to] then CALL('ZADD', P .. ':finished', now_us(), id) end
end

local event_json

-- The change feed (storage/changes.py): a stream capped at about 10000 entries that every
-- event (but `added`), progress and output write appends to. field: 'event' (its JSON),
-- 'progress' (the value) or 'output' (''; readers read the job).
local function feed(id, field, value)
  CALL('XADD', P .. ':changes', 'MAXLEN', '~', '10000', '*', 'job', id, field, value)
end

local function add_event(id, event_type, now, data)
  local eid = CALL('INCR', P .. ':event_id')
  local entry = event_json(eid, event_type, now, data)
  CALL('RPUSH', P .. ':events:' .. id, entry)
  feed(id, 'event', entry)
end

-- Wake idle workers: tokens for any-type waiters and for this type's waiters.
-- Lists are capped and expire, so tokens nobody takes do not pile up.
local function wake(job_type, n)
  if n > 16 then n = 16 end
  local tokens = {}
  for i = 1, n do tokens[i] = '1' end
  for _, key in ipairs({P .. ':wake', P .. ':wake:' .. job_type}) do
    CALL('LPUSH', key, unpack(tokens))
    CALL('LTRIM', key, 0, 63)
    CALL('PEXPIRE', key, 2000)
  end
end

-- Cancel, with reason dependency_failed, the waiting dependents of job `root` (it failed
-- for good or was cancelled), and theirs in turn, each with a `cancelled` event.
local function cancel_dependents(root, now)
  local now_s = fmt(now)
  local frontier = {root}
  while #frontier > 0 do
    local dependency = table.remove(frontier)
    for _, id in ipairs(CALL('SMEMBERS', P .. ':dependents:' .. dependency)) do
      local key = job_key(id)
      if CALL('HGET', key, 'status') == 'waiting' then
        CALL('HINCRBY', key, 'lease_token', 1)
        CALL('HSET', key, 'status', 'cancelled', 'failure_reason', 'dependency_failed', 'cancelled_at', now_s,
          'updated_at', now_s)
        move_status(id, 'waiting', 'cancelled')
        add_event(id, 'cancelled', now, '{"previous_status":"waiting","reason":"dependency_failed","dependency_id":'
          .. dependency .. '}')
        frontier[#frontier + 1] = id
      end
    end
  end
end

-- the waiting dependents of `id` (just completed) whose dependencies have all completed
local function ready_dependents(id, now)
  local now_s = fmt(now)
  for _, dependent in ipairs(CALL('SMEMBERS', P .. ':dependents:' .. id)) do
    local key = job_key(dependent)
    local job = CALL('HMGET', key, 'status', 'job_type', 'priority')
    if job[1] == 'waiting' then
      local all_done = true
      for _, dependency in ipairs(CALL('SMEMBERS', P .. ':depends_on:' .. dependent)) do
        if CALL('HGET', job_key(dependency), 'status') ~= 'completed' then
          all_done = false
          break
        end
      end
      if all_done then
        CALL('HSET', key, 'status', 'pending', 'run_at', now_s, 'updated_at', now_s)
        move_status(dependent, 'waiting', 'pending')
        enqueue(dependent, job[2], tonumber(job[3]), now, now)
        wake(job[2], 1)
        add_event(dependent, 'ready', now, nil)
      end
    end
  end
end

local function append_json(list_text, item)
  if list_text == nil or list_text == '[]' or list_text == false then
    return '[' .. item .. ']'
  end
  return string.sub(list_text, 1, -2) .. ',' .. item .. ']'
end

-- ISO-8601 UTC text for error_history entries (days-from-civil, inverted).
local function iso(us)
  local secs = math.floor(us / 1000000)
  local micro = us - secs * 1000000
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  local text = string.format('%04d-%02d-%02dT%02d:%02d:%02d', y, m, d,
    math.floor(rem / 3600), math.floor((rem % 3600) / 60), rem % 60)
  if micro > 0 then text = text .. string.format('.%06d', micro) end
  return text .. '+00:00'
end

-- An error_history entry: the attempt's traceback ('=' and its text; nil or '' = none),
-- and the output (JSON text, kept as stored) and progress it stored (false/nil = none).
local function error_entry(attempt, err, reason, now, traceback, output, progress)
  return '{"attempt":' .. attempt .. ',"error":' .. cjson.encode(err) .. ',"reason":' .. cjson.encode(reason)
    .. ',"at":"' .. iso(now) .. '","traceback":' .. ((traceback and traceback ~= '') and cjson.encode(string.sub(traceback, 2)) or 'null')
    .. ',"output":' .. (output or 'null') .. ',"progress":' .. (progress or 'null') .. '}'
end

local LEASE_FIELDS = {'locked_by', 'locked_at', 'lease_expires_at'}

-- Flow control (docs/FLOW_CONTROL.md). Concurrency keys: the hash P:conc:active counts the
-- processing jobs of each key. A ready job popped while its key's slots are all taken is
-- parked in P:parked:<key> (its ready-set member, same order) instead of claimed; each
-- slot that frees (free_slot) puts the best parked job of its key back in its ready set.
-- Rate limits: the hashes P:rate:end and P:rate:starts hold each rate key's current fixed
-- window (its end, in us; windows are aligned to the epoch) and the starts counted in it.
-- A ready job popped while its window is full goes to its delayed set until the window
-- ends (its run_at unchanged).

-- Claim one job for `worker` if it is pending: attempts + 1, a new lease token, the
-- lease, output and progress of an earlier attempt cleared, a `processing` event
-- with id `event_id`. Returns the job's hash after the claim (HGETALL form), nil
-- if the job is not pending (or `member`, the ready-set entry it was popped from, is
-- stale: an older copy of a parked job's entry), or false if it was parked. The
-- caller moves it between the index sets.
local function claim_job(id, worker, worker_json, now, now_s, expires_s, event_id, member)
  local key = job_key(id)
  local job = CALL('HGETALL', key)
  local status, attempts, token, earlier = nil, 1, 1, false
  local slot_key, slot_limit, priority, run_at, job_type = nil, nil, nil, nil, nil
  local rate_key, rate_limit, rate_us = nil, nil, nil
  for k = 1, #job, 2 do
    local name = job[k]
    if name == 'status' then status = job[k + 1]
    elseif name == 'attempts' then attempts = tonumber(job[k + 1]) + 1
    elseif name == 'lease_token' then token = tonumber(job[k + 1]) + 1
    elseif name == 'output' or name == 'progress' then earlier = true
    elseif name == 'concurrency_key' then slot_key = job[k + 1]
    elseif name == 'concurrency_limit' then slot_limit = tonumber(job[k + 1])
    elseif name == 'priority' then priority = tonumber(job[k + 1])
    elseif name == 'run_at' then run_at = tonumber(job[k + 1])
    elseif name == 'job_type' then job_type = job[k + 1]
    elseif name == 'rate_key' then rate_key = job[k + 1]
    elseif name == 'rate_limit' then rate_limit = tonumber(job[k + 1])
    elseif name == 'rate_window_ms' then rate_us = tonumber(job[k + 1]) * 1000
    end
  end
  if status ~= 'pending' then return nil end
  if slot_key or rate_key then
    local current = rank(priority, run_at, tonumber(id))
    if member and member ~= current then return nil end
    local window_end, starts = 0, 0
    if rate_key then
      window_end = tonumber(CALL('HGET', P .. ':rate:end', rate_key) or '0')
      if window_end > now then
        starts = tonumber(CALL('HGET', P .. ':rate:starts', rate_key) or '0')
      else
        window_end = (math.floor(now / rate_us) + 1) * rate_us
      end
      if starts >= rate_limit then
        CALL('ZADD', P .. ':delayed:' .. job_type, window_end, id)
        return false
      end
    end
    if slot_key then
      if tonumber(CALL('HGET', P .. ':conc:active', slot_key) or '0') >= slot_limit then
        CALL('ZADD', P .. ':parked:' .. slot_key, 0, current)
        return false
      end
      CALL('HINCRBY', P .. ':conc:active', slot_key, 1)
    end
    if rate_key then
      CALL('HSET', P .. ':rate:end', rate_key, fmt(window_end))
      CALL('HSET', P .. ':rate:starts', rate_key, fmt(starts + 1))
    end
  end
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
  local entry = event_json(event_id, 'processing', now,
    '{"worker_id":' .. worker_json .. ',"attempt":' .. changes[4] .. '}')
  CALL('RPUSH', P .. ':events:' .. id, entry)
  feed(id, 'event', entry)
  -- the reply is the hash before the claim plus the changed fields after it: read as
  -- name/value pairs in order, the later value of a repeated name wins
  for c = 1, #changes do job[#job + 1] = changes[c] end
  return job
end

-- Give back the concurrency slot of job `id` (leaving processing), if it has a key: the
-- best parked job of that key that is still pending goes back to its ready set. `slot_key`:
-- the job's concurrency_key as the caller read it (false: none), else (nil) read here.
local function free_slot(id, slot_key)
  if slot_key == nil then slot_key = CALL('HGET', job_key(id), 'concurrency_key') end
  if not slot_key then return end
  if CALL('HINCRBY', P .. ':conc:active', slot_key, -1) <= 0 then
    CALL('HDEL', P .. ':conc:active', slot_key)
  end
  local parked = P .. ':parked:' .. slot_key
  while true do
    local popped = CALL('ZPOPMIN', parked, 1)
    if #popped == 0 then return end
    local job = CALL('HMGET', job_key(fmt(tonumber(rank_id(popped[1])))), 'status', 'job_type')
    if job[1] == 'pending' then
      CALL('ZADD', P .. ':ready:' .. job[2], 0, popped[1])
      wake(job[2], 1)
      return
    end
  end
end

-- Add the dead-letter job of job `id`, which has just failed for good, if it has a
-- dead_letter (JSON: the new job's type and options): a pending job whose payload is the
-- envelope of dqflow/schemas/dead_letter.json (the original payload kept as stored), indexed
-- as add_many.lua indexes a job, its `added` event id in the hash, workers woken.
local function add_dead_letter(id, now)
  local job = CALL('HMGET', job_key(id), 'dead_letter', 'job_type', 'payload', 'error_history', 'failure_reason',
    'attempts')
  if not job[1] then return end
  local spec = cjson.decode(job[1])
  local last = tonumber(CALL('GET', P .. ':clock') or '0')
  if now < last then now = last end
  local now_s = fmt(now)
  CALL('SET', P .. ':clock', now_s)
  local new_id = fmt(CALL('INCR', P .. ':id'))
  local payload = '{"original_id":' .. id .. ',"job_type":' .. cjson.encode(job[2]) .. ',"payload":' .. job[3]
    .. ',"error_history":' .. (job[4] or '[]') .. ',"failure_reason":' .. (job[5] and cjson.encode(job[5]) or 'null')
    .. ',"failed_at":"' .. iso(now) .. '","attempts":' .. (job[6] or '0') .. '}'
  local job_type, priority = spec.job_type, tonumber(spec.priority or 0)
  local fields = {'id', new_id, 'job_type', job_type, 'status', 'pending', 'priority', fmt(priority),
    'run_at', now_s, 'created_at', now_s, 'updated_at', now_s, 'payload', payload,
    'added_event', fmt(CALL('INCR', P .. ':event_id')),
    'max_attempts', fmt(spec.max_attempts or 3), 'retry_delay_ms', fmt(spec.retry_delay_ms or 10000),
    'retry_backoff', spec.retry_backoff or 'exponential', 'retry_jitter', spec.retry_jitter == false and '0' or '1'}
  for _, name in ipairs({'timeout_ms', 'retry_max_delay_ms'}) do
    if type(spec[name]) == 'number' then
      fields[#fields + 1] = name
      fields[#fields + 1] = fmt(spec[name])
    end
  end
  CALL('HSET', job_key(new_id), unpack(fields))
  local n = tonumber(new_id)
  CALL('ZADD', P .. ':jobs', n, new_id)
  CALL('ZADD', P .. ':status:pending', n, new_id)
  CALL('ZADD', P .. ':type:' .. job_type, n, new_id)
  CALL('SADD', P .. ':types', job_type)
  enqueue(new_id, job_type, priority, now, now)
  wake(job_type, 1)
end

-- Idle workers waiting for a hand-off (see claim.lua and add_many.lua): the hash
-- P:idle maps a worker id to its registration (JSON: until = deadline in us, lease =
-- lease ms, limit = jobs it takes, types = its job types, [] for all); a job handed
-- to it goes to its list P:inbox:<worker id>, already claimed for it.
local function inbox_key(worker)
  return P .. ':inbox:' .. worker
end

local function takes(types, job_type)
  if #types == 0 then return true end
  for _, t in ipairs(types) do
    if t == job_type then return true end
  end
  return false
end

-- Hand ready jobs to idle workers: claim the best ready jobs of a type a worker takes,
-- fenced like any claim, and push them to its inbox, where its blocking pop returns them:
-- it starts them without another round trip. `ready`: job type -> how many jobs of it the
-- caller just made ready (counted down by those handed over: wake the rest); `event_id`:
-- the last event id drawn. Returns the last event id drawn (the caller stores it).
local function hand_to_idle(ready, now, now_s, event_id)
  local any_ready = false
  for _, n in pairs(ready) do
    if n > 0 then any_ready = true end
  end
  if not any_ready or CALL('HLEN', P .. ':idle') == 0 then return event_id end
  local idle = CALL('HGETALL', P .. ':idle')
  for k = 1, #idle, 2 do
    local worker, registration = idle[k], cjson.decode(idle[k + 1])
    if registration['until'] < now then
      CALL('HDEL', P .. ':idle', worker) -- a worker that stopped waiting without saying so
    else
      local want, lease_ms = registration.limit, registration.lease
      local expires = now + lease_ms * 1000
      local expires_s = fmt(expires)
      local worker_json = cjson.encode(worker)
      local jobs = {}
      for job_type, n in pairs(ready) do
        if n > 0 and want > 0 and takes(registration.types, job_type) then
          local popped = CALL('ZPOPMIN', P .. ':ready:' .. job_type, want)
          for p = 1, #popped, 2 do
            local id = fmt(tonumber(rank_id(popped[p])))
            local job = claim_job(id, worker, worker_json, now, now_s, expires_s, event_id + 1, popped[p])
            if job then
              event_id = event_id + 1
              CALL('ZREM', P .. ':status:pending', id)
              CALL('ZADD', P .. ':status:processing', id, id)
              CALL('ZADD', P .. ':processing', expires, id)
              jobs[#jobs + 1] = job
              want = want - 1
              if ready[job_type] > 0 then ready[job_type] = ready[job_type] - 1 end
            end
          end
        end
      end
      if #jobs > 0 then
        CALL('HDEL', P .. ':idle', worker)
        CALL('RPUSH', inbox_key(worker), cjson.encode(jobs))
        -- a worker gone meanwhile never reads it: its jobs come back when their leases expire
        CALL('PEXPIRE', inbox_key(worker), lease_ms)
      end
    end
  end
  return event_id
end

-- Batched sorted-set writes: collect (score, member) pairs per key, then one ZADD/ZREM
-- per key (chunked to stay under Lua's unpack limit).
local function batch_add(batches, key, score, member)
  local b = batches[key]
  if not b then
    b = {}
    batches[key] = b
  end
  b[#b + 1] = score
  b[#b + 1] = member
end

local function flush_zadd(batches)
  for key, b in pairs(batches) do
    for s = 1, #b, 4000 do
      CALL('ZADD', key, unpack(b, s, math.min(s + 3999, #b)))
    end
  end
end

local function zrem_all(key, members)
  for s = 1, #members, 4000 do
    CALL('ZREM', key, unpack(members, s, math.min(s + 3999, #members)))
  end
end

event_json = function(eid, event_type, now, data)
  return '{"id":' .. fmt(eid) .. ',"type":"' .. event_type .. '","at":' .. fmt(now) .. ',"data":'
    .. (data or 'null') .. '}'
end
