-- Change fields of a pending job and record an `edited` event. ARGV: id, fields_json
-- (the event's field list), field count, then name/value pairs (value '' with name
-- prefixed '-' deletes the field; 'run_at' value 'now' means now), then for a tags
-- change: tagset signature ('' for none), tag count, tags...
-- Returns {'ok', hash} | {'missing'} | {'state', status}.
local id = ARGV[1]
local key = job_key(id)
local job = CALL('HMGET', key, 'status', 'job_type', 'priority', 'run_at', 'tags', 'tagset')
local status = job[1]
if not status then return {'missing'} end
if status ~= 'pending' then return {'state', status} end
local now = now_us()
local now_s = fmt(now)
local old_priority, old_run_at = tonumber(job[3]), tonumber(job[4])
local priority, run_at = old_priority, old_run_at
local tags_changed = false
local i = 4
for _ = 1, tonumber(ARGV[3]) do
  local name, value = ARGV[i], ARGV[i + 1]
  if string.sub(name, 1, 1) == '-' then
    CALL('HDEL', key, string.sub(name, 2))
  else
    if name == 'run_at' then
      if value == 'now' then run_at = now else run_at = tonumber(value) end
      value = fmt(run_at)
    elseif name == 'priority' then
      priority = tonumber(value)
    elseif name == 'tags' then
      tags_changed = true
    end
    CALL('HSET', key, name, value)
  end
  i = i + 2
end
if priority ~= old_priority or run_at ~= old_run_at then
  dequeue(id, job[2], old_priority, old_run_at)
  if enqueue(id, job[2], priority, run_at, now) then wake(job[2], 1) end
end
if tags_changed then
  local idn = tonumber(id)
  if job[5] then
    for _, tag in ipairs(cjson.decode(job[5])) do
      CALL('ZREM', P .. ':tag:' .. tag, id)
    end
  end
  if job[6] then CALL('ZREM', P .. ':tagset:' .. job[6], id) end
  local tagset = ARGV[i]
  for t = 1, tonumber(ARGV[i + 1]) do
    CALL('ZADD', P .. ':tag:' .. ARGV[i + 1 + t], idn, id)
  end
  if tagset ~= '' then
    CALL('HSET', key, 'tagset', tagset)
    CALL('ZADD', P .. ':tagset:' .. tagset, idn, id)
  else
    CALL('HDEL', key, 'tagset')
  end
end
CALL('HSET', key, 'updated_at', now_s)
add_event(id, 'edited', now, '{"fields":' .. ARGV[2] .. '}')
return {'ok', CALL('HGETALL', key)}
