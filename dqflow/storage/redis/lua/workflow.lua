-- Move workflow runs (storage/workflows.py): the ends of step jobs and the run changes
-- they cause, applied together or not at all. ARGV[1] is one JSON plan:
--   guards: {runs = {{run id, version}...}, jobs = {{job id, status, lease token ('' = any)}...}}
--           any mismatch: {'conflict'} and nothing written (the caller re-reads and recomputes)
--   creates: new runs (storage/workflows.py planned_starts), each {name, input, tags,
--           idempotency_key, run = as in `runs` below without its id}; its jobs carry `slot`
--           (their place among the creates' jobs, 1-based) instead of an id, and its steps name
--           them -slot in their `job_ids`. This script draws the run and job ids. A run whose
--           idempotency key a run already has (or an earlier one of these) is left out.
--   create_jobs: how many jobs the creates hold
--   ops:    step-job ends: {'c', id, has_output, output} completed, {'f', id, error, reason,
--           traceback} failed for good, {'x', id} cancelled by a user, {'e', id} lease expired
--           on the last attempt
--   runs:   per run: id, the fields to set (status, output, failure_reason, error, steps,
--           completed: true when finished), jobs to insert (id pre-drawn, hash fields, tags),
--           cancel (ids) with cancel_reason, retry (ids)
-- Every job this takes out of processing gives back its concurrency slot; a job failed for
-- good adds its dead-letter job (docs/FLOW_CONTROL.md).
-- Returns {'ok'}, then per create its run id and '1' (created) or '0' (its key was taken).
local plan = cjson.decode(ARGV[1])
local now = now_us()
local last = tonumber(CALL('GET', P .. ':clock') or '0')
if now < last then now = last end
local now_s = fmt(now)
local NULL = cjson.null

local function run_key(id)
  return P .. ':wfrun:' .. id
end

for _, guard in ipairs(plan.guards.runs or {}) do
  if CALL('HGET', run_key(guard[1]), 'version') ~= guard[2] then return {'conflict'} end
end
for _, guard in ipairs(plan.guards.jobs or {}) do
  local job = CALL('HMGET', job_key(guard[1]), 'status', 'lease_token')
  if job[1] ~= guard[2] or (guard[3] ~= '' and (job[2] or '0') ~= guard[3]) then return {'conflict'} end
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

for _, op in ipairs(plan.ops or {}) do
  local kind, id = op[1], op[2]
  local key = job_key(id)
  if kind == 'c' then
    if op[3] == '1' then
      local changed = CALL('HGET', key, 'output') ~= op[4]
      CALL('HSET', key, 'output', op[4])
      if changed then feed(id, 'output', '') end
    end
    CALL('HSET', key, 'status', 'completed', 'completed_at', now_s, 'updated_at', now_s)
    CALL('HDEL', key, 'lease_expires_at', 'failure_reason')
    CALL('ZREM', P .. ':processing', id)
    free_slot(id)
    move_status(id, 'processing', 'completed')
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
local function move(run)
  local key = run_key(run.id)
  for _, job in ipairs(run.jobs) do
    local id, job_type = job.id, job.job_type
    local event_id = CALL('INCR', P .. ':event_id')
    CALL('HSET', job_key(id), 'id', id, 'payload', job.payload, 'added_event', fmt(event_id), 'job_type', job_type,
      'status', 'pending', 'priority', job.priority, 'run_at', now_s, 'created_at', now_s, 'updated_at', now_s,
      unpack(job.fields))
    local n = tonumber(id)
    CALL('ZADD', P .. ':jobs', n, id)
    CALL('ZADD', P .. ':type:' .. job_type, n, id)
    CALL('ZADD', P .. ':status:pending', n, id)
    CALL('ZADD', P .. ':ready:' .. job_type, 0, rank(tonumber(job.priority), now, n))
    for _, tag_key in ipairs(job.tag_keys) do CALL('ZADD', P .. tag_key, n, id) end
    CALL('SADD', P .. ':types', job_type)
    woken[job_type] = (woken[job_type] or 0) + 1
  end
  for _, id in ipairs(run.cancel) do cancel(id, run.cancel_reason) end
  for _, id in ipairs(run.retry) do
    local job_key_ = job_key(id)
    local job = CALL('HMGET', job_key_, 'status', 'job_type', 'priority')
    local status = job[1]
    if status == 'failed' or status == 'cancelled' then
      CALL('HINCRBY', job_key_, 'lease_token', 1)
      CALL('HSET', job_key_, 'status', 'pending', 'attempts', '0', 'run_at', now_s, 'last_retried_at', now_s,
        'updated_at', now_s)
      CALL('HDEL', job_key_, 'failure_reason', 'progress', 'output', 'completed_at', 'cancelled_at', 'started_at',
        'locked_by', 'locked_at', 'lease_expires_at')
      move_status(id, status, 'pending')
      enqueue(id, job[2], tonumber(job[3]), now, now)
      woken[job[2]] = (woken[job[2]] or 0) + 1
      add_event(id, 'retried', now, '{"previous_status":"' .. status .. '","reason":"workflow_retried"}')
    end
  end
  local before = CALL('HGET', key, 'status')
  local set = {'status', run.status, 'steps', run.steps, 'updated_at', now_s}
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
  CALL('HINCRBY', key, 'version', 1)
  if before ~= run.status then
    CALL('ZREM', P .. ':wfruns:status:' .. before, run.id)
    CALL('ZADD', P .. ':wfruns:status:' .. run.status, run.id, run.id)
  end
end

for _, run in ipairs(plan.runs or {}) do move(run) end

-- new runs: each stored running (version 0), then moved to its planned state like any run
local answer = {'ok'}
local first_job = 0 -- the id of the creates' job at slot k is first_job + k
if (plan.create_jobs or 0) > 0 then first_job = CALL('INCRBY', P .. ':id', plan.create_jobs) - plan.create_jobs end
local function job_ids(ids) -- the text of a `job_ids` array, placeholders -k replaced by ids
  return '"job_ids":[' .. string.gsub(ids, '%-(%d+)', function(k) return fmt(first_job + tonumber(k)) end) .. ']'
end
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
    local run = create.run
    run.id = id
    -- `"job_ids":[` only occurs as a key: inside a JSON string its quotes would be escaped
    run.steps = string.gsub(run.steps, '"job_ids":%[([%d,%-]*)%]', job_ids)
    for _, job in ipairs(run.jobs) do
      job.id = fmt(first_job + job.slot)
      job.fields[#job.fields + 1] = 'workflow_run_id'
      job.fields[#job.fields + 1] = id
    end
    move(run)
    answer[#answer + 1] = id
    answer[#answer + 1] = '1'
  end
end
for job_type, n in pairs(woken) do wake(job_type, n) end
return answer
