-- Move workflow runs (storage/workflows.py): the ends of step jobs and the run changes they
-- cause, each run's applied together or not at all. ARGV[1] is one JSON plan; ARGV[k] (k >= 2)
-- hold the runs' step states (JSON text), named by their k:
--   runs:   per run (its guards checked, then its writes, before the next run's):
--             id; version and status: the run's as read (absent: no run to guard or move);
--             jobs: guards {{job id, status, lease token ('' = any), run id ('' = any)}...};
--             ops: its step-job ends: {'c', id, has_output, output} completed, {'f', id, error,
--             reason, traceback} failed for good, {'x', id} cancelled by a user, {'e', id} lease
--             expired on the last attempt;
--             move (absent: the run stays as it is): status, output, failure_reason, error
--             (absent: none), steps (its ARGV k), jobs to insert {shape (its place in `shapes`),
--             payload, fan-out index ('' = none)}, cancel (ids) with cancel_reason, retry (ids).
--           A guard that fails leaves the run out (nothing of it written): the caller reads
--           it again and recomputes. The script draws the ids of a run's new jobs; its steps
--           name them -1, -2, ... (their place in `jobs`) in their `job_ids`.
--   creates: new runs (storage/workflows.py planned_starts), each {name, input, tags,
--           idempotency_key, move = as above}. A run whose idempotency key a run already
--           has (or an earlier one of these) is left out.
--   shapes: what the new jobs share: {job type, priority, hash fields, tag index keys}.
-- Every job this takes out of processing gives back its concurrency slot; a job failed for
-- good adds its dead-letter job (docs/FLOW_CONTROL.md). The jobs it makes ready are handed
-- to idle workers (claimed for them, in their inboxes) or wake the waiting ones.
-- Returns {'ok'}, then per run the id of its first new job ('0': none) or 'conflict', then
-- per create its run id and '1' (created) or '0' (its key was taken).
local plan = cjson.decode(ARGV[1])
local now = now_us()
local last = tonumber(CALL('GET', P .. ':clock') or '0')
if now < last then now = last end
local now_s = fmt(now)
local NULL = cjson.null

local function run_key(id)
  return P .. ':wfrun:' .. id
end

-- the guards of one run: its version and its jobs' status, token and run as read
local function holds(run)
  if run.version and CALL('HGET', run_key(run.id), 'version') ~= run.version then return false end
  for _, guard in ipairs(run.jobs or {}) do
    local job = CALL('HMGET', job_key(guard[1]), 'status', 'lease_token', 'workflow_run_id')
    if job[1] ~= guard[2] or (guard[3] ~= '' and (job[2] or '0') ~= guard[3])
      or ((guard[4] or '') ~= '' and job[3] ~= guard[4]) then
      return false
    end
  end
  return true
end

CALL('SET', P .. ':clock', now_s)

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

local function end_job(op)
  local kind, id = op[1], op[2]
  local key = job_key(id)
  if kind == 'c' then
    if op[3] == '1' then
      local changed = CALL('HGET', key, 'output') ~= op[4]
      CALL('HSET', key, 'status', 'completed', 'completed_at', now_s, 'updated_at', now_s, 'output', op[4])
      if changed then feed(id, 'output', '') end
    else
      CALL('HSET', key, 'status', 'completed', 'completed_at', now_s, 'updated_at', now_s)
    end
    CALL('HDEL', key, 'lease_expires_at', 'failure_reason')
    free_slot(id)
    -- its index moves are written together with the batch's (below)
    completed[#completed + 1] = id
    batch_add(zsets, P .. ':status:completed', tonumber(id), id)
    batch_add(zsets, P .. ':finished', now, id)
    add_event(id, 'completed', now, nil)
    ready_dependents(id, now)
  elseif kind == 'f' then
    failed(id, op[3], op[4], op[5], false)
  elseif kind == 'e' then
    local job = CALL('HMGET', key, 'max_attempts', 'locked_by')
    failed(id, 'worker ' .. (job[2] or '') .. ' stopped renewing its lease and the job has used all ' .. job[1]
      .. ' attempts', 'lease_expired', nil, true)
  else
    cancel(id, nil)
  end
end

local woken = {}
-- store the move of run `id`, stored with status `before` at `version` (guarded); returns
-- the id of its first new job (0: none)
local function move(id, run, before, version)
  local key = run_key(id)
  local steps = ARGV[run.steps]
  local first = 0
  local jobs = run.jobs or {}
  local count = #jobs
  if count > 0 then
    first = CALL('INCRBY', P .. ':id', count) - count + 1
    -- `"job_ids":[` only occurs as a key: inside a JSON string its quotes would be escaped
    steps = string.gsub(steps, '"job_ids":%[([%d,%-]*)%]', function(ids)
      return '"job_ids":[' .. string.gsub(ids, '%-(%d+)', function(k) return fmt(first + tonumber(k) - 1) end) .. ']'
    end)
  end
  for k, job in ipairs(jobs) do
    local shape = plan.shapes[job[1]]
    local job_id, job_type, priority = fmt(first + k - 1), shape[1], shape[2]
    local event_id = CALL('INCR', P .. ':event_id')
    local fields = {'id', job_id, 'payload', job[2], 'added_event', fmt(event_id), 'job_type', job_type,
      'status', 'pending', 'priority', priority, 'run_at', now_s, 'created_at', now_s, 'updated_at', now_s,
      'workflow_run_id', id}
    for _, field in ipairs(shape[3]) do fields[#fields + 1] = field end
    if job[3] ~= '' then
      fields[#fields + 1] = 'workflow_item'
      fields[#fields + 1] = job[3]
    end
    CALL('HSET', job_key(job_id), unpack(fields))
    local n = tonumber(job_id)
    batch_add(zsets, P .. ':jobs', n, job_id)
    batch_add(zsets, P .. ':type:' .. job_type, n, job_id)
    batch_add(zsets, P .. ':status:pending', n, job_id)
    batch_add(zsets, P .. ':ready:' .. job_type, 0, rank(tonumber(priority), now, n))
    for _, tag_key in ipairs(shape[4]) do batch_add(zsets, P .. tag_key, n, job_id) end
    types[job_type] = true
    woken[job_type] = (woken[job_type] or 0) + 1
  end
  for _, job_id in ipairs(run.cancel or {}) do cancel(job_id, run.cancel_reason) end
  for _, job_id in ipairs(run.retry or {}) do
    local job_key_ = job_key(job_id)
    local job = CALL('HMGET', job_key_, 'status', 'job_type', 'priority')
    local status = job[1]
    if status == 'failed' or status == 'cancelled' then
      CALL('HINCRBY', job_key_, 'lease_token', 1)
      CALL('HSET', job_key_, 'status', 'pending', 'attempts', '0', 'run_at', now_s, 'last_retried_at', now_s,
        'updated_at', now_s)
      CALL('HDEL', job_key_, 'failure_reason', 'progress', 'output', 'completed_at', 'cancelled_at', 'started_at',
        'locked_by', 'locked_at', 'lease_expires_at')
      move_status(job_id, status, 'pending')
      enqueue(job_id, job[2], tonumber(job[3]), now, now)
      woken[job[2]] = (woken[job[2]] or 0) + 1
      add_event(job_id, 'retried', now, '{"previous_status":"' .. status .. '","reason":"workflow_retried"}')
    end
  end
  local set = {'status', run.status, 'steps', steps, 'updated_at', now_s, 'version', fmt(tonumber(version) + 1)}
  local unset = {}
  for _, name in ipairs({'output', 'failure_reason', 'error'}) do
    if run[name] == nil or run[name] == NULL then
      unset[#unset + 1] = name
    else
      set[#set + 1] = name
      set[#set + 1] = run[name]
    end
  end
  if run.status == 'running' then
    unset[#unset + 1] = 'completed_at'
  else
    set[#set + 1] = 'completed_at'
    set[#set + 1] = now_s
  end
  CALL('HSET', key, unpack(set))
  if #unset > 0 then CALL('HDEL', key, unpack(unset)) end
  if before ~= run.status then
    CALL('ZREM', P .. ':wfruns:status:' .. before, id)
    CALL('ZADD', P .. ':wfruns:status:' .. run.status, id, id)
  end
  return first
end

local answer = {'ok'}
for _, run in ipairs(plan.runs or {}) do
  if holds(run) then
    for _, op in ipairs(run.ops or {}) do end_job(op) end
    answer[#answer + 1] = run.move and fmt(move(run.id, run.move, run.status, run.version)) or '0'
  else
    answer[#answer + 1] = 'conflict'
  end
end

-- new runs: each stored running (version 0), then moved to its planned state like any run
for _, create in ipairs(plan.creates or {}) do
  local idempotency_key = create.idempotency_key
  local keyed = idempotency_key ~= nil and idempotency_key ~= NULL
  local existing = keyed and CALL('HGET', P .. ':wfrun_idempotency', idempotency_key)
  if existing then
    answer[#answer + 1] = existing
    answer[#answer + 1] = '0'
  else
    local id = fmt(CALL('INCR', P .. ':wfrun_id'))
    local key = run_key(id)
    CALL('HSET', key, 'id', id, 'name', create.name, 'status', 'running', 'input', create.input, 'tags', create.tags,
      'version', '0', 'created_at', now_s, 'updated_at', now_s)
    CALL('ZADD', P .. ':wfruns', id, id)
    CALL('ZADD', P .. ':wfruns:name:' .. create.name, id, id)
    CALL('ZADD', P .. ':wfruns:status:running', id, id)
    if keyed then
      CALL('HSET', key, 'idempotency_key', idempotency_key)
      CALL('HSET', P .. ':wfrun_idempotency', idempotency_key, id)
    end
    move(id, create.move, 'running', '0')
    answer[#answer + 1] = id
    answer[#answer + 1] = '1'
  end
end
if #completed > 0 then
  zrem_all(P .. ':processing', completed)
  zrem_all(P .. ':status:processing', completed)
end
flush_zadd(zsets)
for job_type in pairs(types) do CALL('SADD', P .. ':types', job_type) end
-- the jobs made ready go to idle workers first (_lib.lua's hand_to_idle), as an add's do
local last_event = tonumber(CALL('GET', P .. ':event_id') or '0')
local handed = hand_to_idle(woken, now, now_s, last_event)
if handed ~= last_event then CALL('SET', P .. ':event_id', fmt(handed)) end
for job_type, n in pairs(woken) do
  if n > 0 then wake(job_type, n) end
end
return answer
