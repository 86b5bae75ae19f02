-- Move workflow runs (storage/workflows.py): the ends of step jobs and the run changes they
-- cause, each run's applied together or not at all. ARGV is read in order (no JSON to decode;
-- _workflows.py's _Plan writes it); a count comes before what it counts:
--   shapes: what the new jobs share, each {job type, priority, hash fields (count, then name and
--           value pairs flat), tag index keys (count, keys)};
--   runs:   per run (its guards checked, then its writes, before the next run's): the count of
--           ARGV entries after this one that are the run's (skipped when a guard fails), its id,
--           its version and status as read ('' = no run to guard or move), its jobs' guards
--           {job id, status, lease token ('' = any), run id ('' = any)}, its step-job ends:
--           {'c', id, has_output, output} completed, {'f', id, error, reason, traceback} failed
--           for good, {'x', id} cancelled by a user, {'e', id} lease expired on the last attempt;
--           then its move;
--   creates: new runs (storage/workflows.py planned_starts), each: the count of its ARGV
--           entries after this one, its name, input, tags and idempotency_key, then its move.
--           A run whose idempotency key a run already has (or an earlier one of these) is
--           left out.
-- A move is '0' (the run stays as it is) or '1' and: status, the jobs to insert (count, then
-- each {shape (its place in shapes), payload, fan-out index ('' = none)}), '0' (none of what
-- follows) or '1' and {output, failure_reason, error, cancel_reason, the jobs to cancel (count,
-- ids), the jobs to retry (count, ids)}, then the run's step state: its count of holes, its text up to the first hole, and per hole
-- {k, n, the text after it}: the ids drawn for the run's new jobs k .. k + n - 1, comma-separated.
-- An optional text (output, failure_reason, error, cancel_reason, idempotency_key) is '' for
-- none, else '=' and the text.
-- A guard that fails leaves the run out (nothing of it written): the caller reads it again and
-- recomputes. The script draws the ids of a run's new jobs.
-- Every job this takes out of processing gives back its concurrency slot; a job failed for
-- good adds its dead-letter job (docs/FLOW_CONTROL.md). The jobs it makes ready are handed
-- to idle workers (claimed for them, in their inboxes) or wake the waiting ones.
-- Eager dispatch (Storage.settle_and_claim): ARGV may start with 'c', the worker id, its lease
-- (ms) and how many jobs it may claim at most; a new job whose shape place is negative (-s for
-- shape s) may be claimed: the first ones of them, up to that limit, in the order written, are
-- stored claimed for that worker (processing, attempt 1, lease token 1, a `processing` event
-- right after its `added` one, both at this call's clock), never in the ready or pending sets.
-- The caller counts their `processing` events in the events to draw.
-- Returns {'ok'} (with a claim: this call's clock, in us), then per run the id of its first new
-- job ('0': none) or 'conflict', then per create its run id and '1' (created) or '0' (its key
-- was taken).
local at = 1
local claimer, claim_lease, claim_left = nil, 0, 0
if ARGV[1] == 'c' then
  claimer, claim_lease, claim_left = ARGV[2], tonumber(ARGV[3]) * 1000, tonumber(ARGV[4])
  at = 5
end

local function take()
  local value = ARGV[at]
  at = at + 1
  return value
end

-- (a count is nearly always 0 or 1: those are compared, not parsed)
local function take_count()
  local value = take()
  if value == '0' then return 0 elseif value == '1' then return 1 end
  return tonumber(value)
end

local function take_optional()
  local value = take()
  if value == '' then return nil end
  return string.sub(value, 2)
end

local now = now_us()
local last = tonumber(CALL('GET', P .. ':clock') or '0')
if now < last then now = last end
local now_s = fmt(now)

local event_count, job_count = take_count(), take_count()
-- the last event id and job id drawn so far (each bumped before use)
local event_id, job_id_drawn = 0, 0
if event_count > 0 then event_id = CALL('INCRBY', P .. ':event_id', event_count) - event_count end
if job_count > 0 then job_id_drawn = CALL('INCRBY', P .. ':id', job_count) - job_count end

-- a completion's event (event_json's text, its time formatted once per call)
local function completed_event(id)
  event_id = event_id + 1
  local entry = '{"id":' .. fmt(event_id) .. ',"type":"completed","at":' .. now_s .. ',"data":null}'
  CALL('RPUSH', P .. ':events:' .. id, entry)
  feed(id, 'event', entry)
end

local function run_key(id)
  return P .. ':wfrun:' .. id
end

-- eager dispatch: the lease's end, the claiming worker as JSON, the hash fields of a claimed job
-- of each shape (built on first use)
local claim_expires_s, claimer_json, claimed_shapes = '', '', {}
if claimer then
  claim_expires_s = fmt(now + claim_lease)
  claimer_json = cjson.encode(claimer)
end

local function claimed_fields(s, shape)
  local fields = claimed_shapes[s]
  if not fields then
    fields = {}
    for f, value in ipairs(shape[3]) do fields[f] = value end
    fields[4] = 'processing' -- ('status', 'pending' are its third and fourth entries)
    for _, value in ipairs({'attempts', '1', 'lease_token', '1', 'locked_by', claimer, 'locked_at', now_s,
      'lease_expires_at', claim_expires_s, 'started_at', now_s}) do
      fields[#fields + 1] = value
    end
    claimed_shapes[s] = fields
  end
  return fields
end

-- what the guards read of each guarded job (the HMGET's reply: [4] output, [5] concurrency_key), by id
local guarded = {}

-- the guards of one run: its version (none: '') and its jobs' status, token and run as read
local function holds(id, version)
  if version ~= '' and CALL('HGET', run_key(id), 'version') ~= version then return false end
  for _ = 1, take_count() do
    local guard_id, status, token, run_id = take(), take(), take(), take()
    local job = CALL('HMGET', job_key(guard_id), 'status', 'lease_token', 'workflow_run_id', 'output',
      'concurrency_key')
    if job[1] ~= status or (token ~= '' and (job[2] or '0') ~= token) or (run_id ~= '' and job[3] ~= run_id) then
      return false
    end
    guarded[guard_id] = job
  end
  return true
end

CALL('SET', P .. ':clock', now_s)

local shapes = {}
for s = 1, take_count() do
  local job_type, priority = take(), take()
  -- [3]: the hash fields its jobs share, those of this call's clock included
  local fields = {'job_type', job_type, 'status', 'pending', 'priority', priority, 'run_at', now_s,
    'created_at', now_s, 'updated_at', now_s}
  local tag_keys = {}
  for _ = 1, take_count() do fields[#fields + 1] = take() end
  for t = 1, take_count() do tag_keys[t] = take() end
  -- [5]: the head of its jobs' ready-set members (_lib.lua's rank), the job id to append
  shapes[s] = {job_type, priority, fields, tag_keys, string.sub(rank(tonumber(priority), now, 0), 1, -17)}
end

-- a cancelled step job: fenced off (token bumped) and out of every queue
local function cancel(id, reason)
  local key = job_key(id)
  local job = CALL('HMGET', key, 'status', 'job_type', 'priority', 'run_at')
  local status = job[1]
  if status ~= 'pending' and status ~= 'waiting' and status ~= 'processing' then return end
  if status == 'pending' then
    dequeue(id, job[2], tonumber(job[3]), tonumber(job[4]))
  elseif status == 'processing' then
    CALL('ZREM', P .. ':processing', id)
    free_slot(id)
  end
  CALL('HINCRBY', key, 'lease_token', 1)
  CALL('HSET', key, 'status', 'cancelled', 'cancelled_at', now_s, 'updated_at', now_s)
  CALL('HDEL', key, 'lease_expires_at')
  local data = '{"previous_status":"' .. status .. '"'
  if reason then
    CALL('HSET', key, 'failure_reason', reason)
    data = data .. ',"reason":' .. cjson.encode(reason)
  end
  move_status(id, status, 'cancelled')
  add_event(id, 'cancelled', now, data .. '}')
  cancel_dependents(id, now)
end

local function failed(id, err, reason, traceback, bump)
  local key = job_key(id)
  local job = CALL('HMGET', key, 'attempts', 'error_history', 'output', 'progress')
  CALL('HSET', key, 'status', 'failed', 'failure_reason', reason, 'last_failed_at', now_s, 'updated_at', now_s,
    'error_history', append_json(job[2], error_entry(job[1], err, reason, now, traceback, job[3], job[4])))
  CALL('HDEL', key, 'lease_expires_at')
  if bump then CALL('HINCRBY', key, 'lease_token', 1) end
  CALL('ZREM', P .. ':processing', id)
  free_slot(id)
  move_status(id, 'processing', 'failed')
  add_event(id, 'failed', now, '{"attempt":' .. job[1] .. ',"error":' .. cjson.encode(err) .. ',"reason":'
    .. cjson.encode(reason) .. ',"will_retry":false}')
  cancel_dependents(id, now)
  add_dead_letter(id, now)
end

-- index writes batched over the whole call (one ZADD / ZREM per key), done before the
-- hand-off to idle workers: completed jobs (out of processing) and added jobs
local completed, zsets, types = {}, {}, {}

-- one step-job end, read from ARGV
local function end_job()
  local kind, id = take(), take()
  local key = job_key(id)
  if kind == 'c' then
    local has_output, output = take(), take()
    local read = guarded[id] -- a completion is always guarded; read again if not
    if has_output == '1' then
      local stored = read and read[4]
      if not read then stored = CALL('HGET', key, 'output') end
      CALL('HSET', key, 'status', 'completed', 'completed_at', now_s, 'updated_at', now_s, 'output', output)
      if stored ~= output then feed(id, 'output', '') end
    else
      CALL('HSET', key, 'status', 'completed', 'completed_at', now_s, 'updated_at', now_s)
    end
    CALL('HDEL', key, 'lease_expires_at', 'failure_reason')
    free_slot(id, read and read[5])
    -- its index moves are written together with the batch's (below)
    completed[#completed + 1] = id
    batch_add(zsets, P .. ':status:completed', id, id)
    batch_add(zsets, P .. ':finished', now_s, id)
    completed_event(id)
    ready_dependents(id, now)
  elseif kind == 'f' then
    local err, reason, traceback = take(), take(), take()
    failed(id, err, reason, traceback, false)
  elseif kind == 'e' then
    local job = CALL('HMGET', key, 'max_attempts', 'locked_by')
    failed(id, 'worker ' .. (job[2] or '') .. ' stopped renewing its lease and the job has used all ' .. job[1]
      .. ' attempts', 'lease_expired', nil, true)
  else
    cancel(id, nil)
  end
end

local woken = {}
-- run index moves, batched over the call: written after the adds (a run created and moved at
-- once is added to the running index, then removed from it)
local run_zrems = {}

-- read a move from ARGV and store it for run `id`, stored with status `before` at `version`
-- (guarded); returns the id of its first new job as text ('0': none)
local function move(id, before, version)
  local key = run_key(id)
  local status = take()
  local count = take_count()
  local first, first_text = 0, '0'
  if count > 0 then
    first = job_id_drawn + 1
    job_id_drawn = job_id_drawn + count
  end
  for k = 1, count do
    local s = take_count()
    local claimed = false
    if s < 0 then -- one the caller may claim (eager dispatch)
      s = -s
      if claim_left > 0 then
        claim_left = claim_left - 1
        claimed = true
      end
    end
    local shape = shapes[s]
    local payload, item = take(), take()
    local job_id, job_type = fmt(first + k - 1), shape[1]
    if k == 1 then first_text = job_id end
    event_id = event_id + 1
    local fields = claimed and claimed_fields(s, shape) or shape[3]
    if item == '' then
      CALL('HSET', job_key(job_id), 'id', job_id, 'payload', payload, 'added_event', fmt(event_id),
        'workflow_run_id', id, unpack(fields))
    else
      CALL('HSET', job_key(job_id), 'id', job_id, 'payload', payload, 'added_event', fmt(event_id),
        'workflow_run_id', id, 'workflow_item', item, unpack(fields))
    end
    -- scores as text, like the ids: no number formatted or parsed here
    batch_add(zsets, P .. ':jobs', job_id, job_id)
    batch_add(zsets, P .. ':type:' .. job_type, job_id, job_id)
    for _, tag_key in ipairs(shape[4]) do batch_add(zsets, P .. tag_key, job_id, job_id) end
    types[job_type] = true
    if claimed then -- in processing at once, as claim.lua's claim_job leaves a job, its event after `added`
      batch_add(zsets, P .. ':status:processing', job_id, job_id)
      batch_add(zsets, P .. ':processing', claim_expires_s, job_id)
      event_id = event_id + 1
      local entry = '{"id":' .. fmt(event_id) .. ',"type":"processing","at":' .. now_s .. ',"data":{"worker_id":'
        .. claimer_json .. ',"attempt":1}}'
      CALL('RPUSH', P .. ':events:' .. job_id, entry)
      feed(job_id, 'event', entry)
    else
      batch_add(zsets, P .. ':status:pending', job_id, job_id)
      batch_add(zsets, P .. ':ready:' .. job_type, '0', shape[5] .. string.format('%016d', first + k - 1))
      woken[job_type] = (woken[job_type] or 0) + 1
    end
  end
  local output, failure_reason, err, cancel_reason
  local extras = take() == '1'
  if extras then
    output, failure_reason, err, cancel_reason = take_optional(), take_optional(), take_optional(), take_optional()
    for _ = 1, take_count() do cancel(take(), cancel_reason) end
  end
  for _ = 1, extras and take_count() or 0 do
    local job_id = take()
    local job_key_ = job_key(job_id)
    local job = CALL('HMGET', job_key_, 'status', 'job_type', 'priority')
    local job_status = job[1]
    if job_status == 'failed' or job_status == 'cancelled' then
      CALL('HINCRBY', job_key_, 'lease_token', 1)
      CALL('HSET', job_key_, 'status', 'pending', 'attempts', '0', 'run_at', now_s, 'last_retried_at', now_s,
        'updated_at', now_s)
      CALL('HDEL', job_key_, 'failure_reason', 'progress', 'output', 'completed_at', 'cancelled_at', 'started_at',
        'locked_by', 'locked_at', 'lease_expires_at')
      move_status(job_id, job_status, 'pending')
      enqueue(job_id, job[2], tonumber(job[3]), now, now)
      woken[job[2]] = (woken[job[2]] or 0) + 1
      add_event(job_id, 'retried', now, '{"previous_status":"' .. job_status .. '","reason":"workflow_retried"}')
    end
  end
  -- the step state: the text between the holes, the holes filled with the ids just drawn
  local holes = take_count()
  local steps = take()
  if holes > 0 then
    local from, n = first + take_count() - 1, take_count()
    if holes == 1 and n == 1 then -- a linear step's next job
      steps = steps .. (from == first and first_text or fmt(from)) .. take()
    else
      local parts = {steps}
      for hole = 1, holes do
        if hole > 1 then from, n = first + take_count() - 1, take_count() end
        for j = 0, n - 1 do
          parts[#parts + 1] = (j > 0 and ',' or '') .. fmt(from + j)
        end
        parts[#parts + 1] = take()
      end
      steps = table.concat(parts)
    end
  end
  local next_version = fmt(tonumber(version) + 1)
  if status == 'running' and before == 'running' and not extras then -- a step's usual move
    CALL('HSET', key, 'steps', steps, 'updated_at', now_s, 'version', next_version)
    CALL('HDEL', key, 'output', 'failure_reason', 'error', 'completed_at')
    return first_text
  end
  local set = {'status', status, 'steps', steps, 'updated_at', now_s, 'version', next_version}
  local unset = {}
  local function put(name, value)
    if value then
      set[#set + 1] = name
      set[#set + 1] = value
    else
      unset[#unset + 1] = name
    end
  end
  put('output', output)
  put('failure_reason', failure_reason)
  put('error', err)
  if status == 'running' then
    unset[#unset + 1] = 'completed_at'
  else
    set[#set + 1] = 'completed_at'
    set[#set + 1] = now_s
  end
  CALL('HSET', key, unpack(set))
  if #unset > 0 then CALL('HDEL', key, unpack(unset)) end
  if before ~= status then
    local from = P .. ':wfruns:status:' .. before
    run_zrems[from] = run_zrems[from] or {}
    table.insert(run_zrems[from], id)
    batch_add(zsets, P .. ':wfruns:status:' .. status, id, id)
  end
  return first_text
end

local answer = {claimer and now_s or 'ok'}
for _ = 1, take_count() do
  local size, start = take(), at -- read only to skip a run whose guards fail
  local id, version, before = take(), take(), take()
  if holds(id, version) then
    for _ = 1, take_count() do end_job() end
    answer[#answer + 1] = take() == '1' and move(id, before, version) or '0'
  else
    answer[#answer + 1] = 'conflict'
    at = start + tonumber(size)
  end
end

-- new runs: each stored running (version 0), then moved to its planned state like any run
for _ = 1, take_count() do
  local stop = take_count()
  stop = stop + at
  local name, input, tags, idempotency_key = take(), take(), take(), take_optional()
  local existing = idempotency_key and CALL('HGET', P .. ':wfrun_idempotency', idempotency_key)
  if existing then
    answer[#answer + 1] = existing
    answer[#answer + 1] = '0'
  else
    local id = fmt(CALL('INCR', P .. ':wfrun_id'))
    local fields = {'id', id, 'name', name, 'status', 'running', 'input', input, 'tags', tags, 'version', '0',
      'created_at', now_s, 'updated_at', now_s}
    if idempotency_key then
      fields[#fields + 1] = 'idempotency_key'
      fields[#fields + 1] = idempotency_key
      CALL('HSET', P .. ':wfrun_idempotency', idempotency_key, id)
    end
    CALL('HSET', run_key(id), unpack(fields))
    local n = tonumber(id)
    batch_add(zsets, P .. ':wfruns', n, id)
    batch_add(zsets, P .. ':wfruns:name:' .. name, n, id)
    batch_add(zsets, P .. ':wfruns:status:running', n, id)
    if take() == '1' then move(id, 'running', '0') end
    answer[#answer + 1] = id
    answer[#answer + 1] = '1'
  end
  at = stop
end
if #completed > 0 then
  zrem_all(P .. ':processing', completed)
  zrem_all(P .. ':status:processing', completed)
end
flush_zadd(zsets)
for index, ids in pairs(run_zrems) do zrem_all(index, ids) end
for job_type in pairs(types) do CALL('SADD', P .. ':types', job_type) end
-- the jobs made ready go to idle workers first (_lib.lua's hand_to_idle), as an add's do
local last_event = tonumber(CALL('GET', P .. ':event_id') or '0')
local handed = hand_to_idle(woken, now, now_s, last_event)
if handed ~= last_event then CALL('SET', P .. ':event_id', fmt(handed)) end
for job_type, n in pairs(woken) do
  if n > 0 then wake(job_type, n) end
end
return answer
