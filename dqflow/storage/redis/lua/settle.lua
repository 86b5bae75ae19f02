-- Fenced outcomes of attempts, in one script call. ARGV: count, then per outcome its
-- kind and fields:
--   c id lease_token has_output(1/0) output    completed (output kept when has_output is 0)
--   f id lease_token error reason retry_at traceback
--                                              failed: retry_at '' = for good (output and progress
--                                              kept), else pending again then (in us; both cleared);
--                                              traceback: '' = none, else '=' and its text
--   r id lease_token started(1/0)              released to pending now (0 refunds the attempt)
--   w id lease_token wait wake_at token_id     waiting (a durable handler's wait, JSON): wakes at
--                                              wake_at (us, '' = only its token wakes it); the
--                                              attempt refunded; token_id '' = a sleep; a token no
--                                              longer pending makes the job pending at once
-- Each applies only while the job is processing under that token. Returns 1 (applied)
-- or 0 (rejected) per outcome, in order. A new kind of outcome is a new branch below.
-- A completion makes pending each waiting dependent whose dependencies have now all
-- completed (a `ready` event); a failure for good cancels the waiting dependents and
-- adds the job's dead-letter job, if it has a dead_letter.
-- Every outcome gives back the job's concurrency slot (free_slot).
local now = now_us()
local now_s = fmt(now)
local count = tonumber(ARGV[1])
local out = {}
local completed, zsets, seen = {}, {}, {}
-- one INCRBY reserves an event id for every outcome of the batch
local event_id = CALL('INCRBY', P .. ':event_id', count) - count

local function event(id, event_type, data)
  event_id = event_id + 1
  local entry = event_json(event_id, event_type, now, data)
  CALL('RPUSH', P .. ':events:' .. id, entry)
  feed(id, 'event', entry)
end

local function held(key, token)
  local job = CALL('HMGET', key, 'status', 'lease_token')
  return job[1] == 'processing' and job[2] == token
end

local function complete(id, key, has_output, output)
  if has_output == '1' then
    local changed = CALL('HGET', key, 'output') ~= output
    CALL('HSET', key, 'status', 'completed', 'completed_at', now_s, 'updated_at', now_s, 'output', output)
    if changed then feed(id, 'output', '') end
  else
    CALL('HSET', key, 'status', 'completed', 'completed_at', now_s, 'updated_at', now_s)
  end
  CALL('HDEL', key, 'lease_expires_at', 'failure_reason')
  event(id, 'completed', nil)
  completed[#completed + 1] = id
  batch_add(zsets, P .. ':status:completed', tonumber(id), id)
  batch_add(zsets, P .. ':finished', now, id)
  ready_dependents(id, now)
  free_slot(id)
end

local function fail(id, key, err, reason, retry_at, traceback)
  local job = CALL('HMGET', key, 'attempts', 'error_history', 'job_type', 'priority', 'output', 'progress')
  local history = append_json(job[2], error_entry(job[1], err, reason, now, traceback, job[5], job[6]))
  CALL('HSET', key, 'error_history', history, 'failure_reason', reason, 'last_failed_at', now_s,
    'updated_at', now_s)
  CALL('HDEL', key, 'lease_expires_at')
  CALL('ZREM', P .. ':processing', id)
  free_slot(id)
  local will_retry = retry_at ~= ''
  if will_retry then
    local run_at = tonumber(retry_at)
    CALL('HSET', key, 'status', 'pending', 'run_at', fmt(run_at))
    CALL('HDEL', key, 'output', 'progress')
    move_status(id, 'processing', 'pending')
    if enqueue(id, job[3], tonumber(job[4]), run_at, now) then wake(job[3], 1) end
  else
    CALL('HSET', key, 'status', 'failed')
    move_status(id, 'processing', 'failed')
    cancel_dependents(id, now)
    add_dead_letter(id, now)
  end
  event(id, 'failed', '{"attempt":' .. job[1] .. ',"error":' .. cjson.encode(err) .. ',"reason":'
    .. cjson.encode(reason) .. ',"will_retry":' .. (will_retry and 'true' or 'false') .. '}')
end

-- a started job is runnable from now; an unstarted one keeps its place in line (run_at)
local function release(id, key, started)
  local job = CALL('HMGET', key, 'job_type', 'priority', 'run_at')
  local run_at = tonumber(job[3])
  if started == '1' then
    run_at = now
    CALL('HSET', key, 'run_at', now_s)
  else
    CALL('HINCRBY', key, 'attempts', -1)
  end
  CALL('HINCRBY', key, 'lease_token', 1)
  CALL('HSET', key, 'status', 'pending', 'updated_at', now_s)
  CALL('HDEL', key, unpack(LEASE_FIELDS))
  CALL('ZREM', P .. ':processing', id)
  move_status(id, 'processing', 'pending')
  free_slot(id)
  enqueue(id, job[1], tonumber(job[2]), run_at, now)
  wake(job[1], 1)
end

local function wait(id, key, wait_json, wake_at, token_id)
  local job = CALL('HMGET', key, 'job_type', 'priority')
  CALL('HINCRBY', key, 'attempts', -1)
  CALL('HINCRBY', key, 'lease_token', 1)
  CALL('HSET', key, 'status', 'waiting', 'wait', wait_json, 'updated_at', now_s)
  CALL('HDEL', key, unpack(LEASE_FIELDS))
  CALL('ZREM', P .. ':processing', id)
  move_status(id, 'processing', 'waiting')
  free_slot(id)  -- a waiting job holds no concurrency slot; its wake-up claims one again
  event(id, 'waiting', wait_json)
  local token_status = 'pending'
  if token_id ~= '' then token_status = CALL('HGET', P .. ':token:' .. token_id, 'status') or 'missing' end
  if token_status ~= 'pending' then
    CALL('HSET', key, 'status', 'pending', 'run_at', now_s)
    CALL('HDEL', key, 'wait')
    move_status(id, 'waiting', 'pending')
    enqueue(id, job[1], tonumber(job[2]), now, now)
    add_event(id, 'ready', now, '{"token_id":' .. cjson.encode(token_id) .. ',"reason":"token_'
      .. token_status .. '"}')
  elseif wake_at ~= '' then
    CALL('HSET', key, 'wake_at', wake_at)
    CALL('ZADD', P .. ':waits', wake_at, id)
  end
  wake(job[1], 1)
end

-- kind -> (number of fields after id and token, writer)
local KINDS = {
  c = {2, complete},
  f = {4, fail},
  r = {1, release},
  w = {3, wait},
}

-- check every kind before writing anything: a bad batch changes nothing
local i = 2
for n = 1, count do
  local kind = KINDS[ARGV[i]]
  if not kind then
    return redis.error_reply('dqflow settle: unknown outcome kind ' .. tostring(ARGV[i]) .. ' at ' .. n)
  end
  i = i + 3 + kind[1]
end

i = 2
for n = 1, count do
  local kind = KINDS[ARGV[i]]
  local id, token = ARGV[i + 1], ARGV[i + 2]
  local key = job_key(id)
  -- only a job's first outcome in the batch is considered (as on every backend)
  if not seen[id] and held(key, token) then
    kind[2](id, key, unpack(ARGV, i + 3, i + 2 + kind[1]))
    out[n] = 1
  else
    out[n] = 0
  end
  seen[id] = true
  i = i + 3 + kind[1]
end
if #completed > 0 then
  zrem_all(P .. ':processing', completed)
  zrem_all(P .. ':status:processing', completed)
  flush_zadd(zsets)
end
return out
