-- Insert jobs. ARGV: count, then per job: job_type, payload, priority, run_at ('' = now),
-- max_attempts, timeout_ms, retry_delay_ms, retry_backoff, retry_max_delay_ms, retry_jitter,
-- idempotency ('' = none, else '=' .. key), tags_json, tagset signature, tag count, tags...
-- Returns id, created (1/0) per job, in input order.
local now = now_us()
-- created_at never goes backwards, so ids and created_at sort alike (list_jobs relies on it)
local last = tonumber(CALL('GET', P .. ':clock') or '0')
if now < last then now = last end
CALL('SET', P .. ':clock', fmt(now))
local now_s = fmt(now)
local next_id = tonumber(CALL('GET', P .. ':id') or '0')
local next_event = tonumber(CALL('GET', P .. ':event_id') or '0')
local zsets, types, woken = {}, {}, {}
local out = {}
local i = 2
for _ = 1, tonumber(ARGV[1]) do
  local job_type, payload, priority, run_at_s = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local idem, tags_json, tagset, ntags = ARGV[i + 10], ARGV[i + 11], ARGV[i + 12], tonumber(ARGV[i + 13])
  local existing = false
  if idem ~= '' then
    existing = CALL('HGET', P .. ':idempotency', string.sub(idem, 2))
  end
  if existing then
    out[#out + 1] = tonumber(existing)
    out[#out + 1] = 0
  else
    next_id = next_id + 1
    local id = next_id
    local ids = fmt(id)
    local run_at = now
    if run_at_s ~= '' then run_at = tonumber(run_at_s) end
    -- attempts, lease_token (0), error_history and tags ([]) stay absent until they change
    local fields = {'id', ids, 'job_type', job_type, 'payload', payload, 'status', 'pending',
      'priority', priority, 'run_at', fmt(run_at), 'max_attempts', ARGV[i + 4],
      'retry_delay_ms', ARGV[i + 6], 'retry_backoff', ARGV[i + 7], 'retry_jitter', ARGV[i + 9],
      'created_at', now_s, 'updated_at', now_s}
    if ntags > 0 then
      fields[#fields + 1] = 'tags'
      fields[#fields + 1] = tags_json
    end
    if ARGV[i + 5] ~= '' then
      fields[#fields + 1] = 'timeout_ms'
      fields[#fields + 1] = ARGV[i + 5]
    end
    if ARGV[i + 8] ~= '' then
      fields[#fields + 1] = 'retry_max_delay_ms'
      fields[#fields + 1] = ARGV[i + 8]
    end
    if idem ~= '' then
      local ikey = string.sub(idem, 2)
      fields[#fields + 1] = 'idempotency_key'
      fields[#fields + 1] = ikey
      CALL('HSET', P .. ':idempotency', ikey, ids)
    end
    if tagset ~= '' then
      fields[#fields + 1] = 'tagset'
      fields[#fields + 1] = tagset
      batch_add(zsets, P .. ':tagset:' .. tagset, id, ids)
    end
    CALL('HSET', job_key(ids), unpack(fields))
    batch_add(zsets, P .. ':jobs', id, ids)
    batch_add(zsets, P .. ':status:pending', id, ids)
    batch_add(zsets, P .. ':type:' .. job_type, id, ids)
    for t = 1, ntags do
      batch_add(zsets, P .. ':tag:' .. ARGV[i + 13 + t], id, ids)
    end
    if run_at <= now then
      batch_add(zsets, P .. ':ready:' .. job_type, 0, rank(tonumber(priority), run_at, id))
      woken[job_type] = (woken[job_type] or 0) + 1
    else
      batch_add(zsets, P .. ':delayed:' .. job_type, run_at, ids)
    end
    types[job_type] = true
    next_event = next_event + 1
    CALL('RPUSH', P .. ':events:' .. ids, event_json(next_event, 'added', now, nil))
    out[#out + 1] = id
    out[#out + 1] = 1
  end
  i = i + 14 + ntags
end
CALL('SET', P .. ':id', fmt(next_id))
CALL('SET', P .. ':event_id', fmt(next_event))
flush_zadd(zsets)
for job_type in pairs(types) do
  CALL('SADD', P .. ':types', job_type)
end
for job_type, n in pairs(woken) do
  wake(job_type, n)
end
return out
