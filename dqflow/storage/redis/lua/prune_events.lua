-- retention.events (Storage.delete_old_events): the history of up to ARGV[2] jobs that
-- finished before ARGV[1] (us), taken from P:finished after the position kept in
-- P:events_cursor (a finish time), which moves forward. The jobs stay.
local before, limit = ARGV[1], tonumber(ARGV[2])
local cursor = CALL('GET', P .. ':events_cursor')
local low = '-inf'
if cursor then low = '(' .. cursor end
local entries = CALL('ZRANGE', P .. ':finished', low, '(' .. before, 'BYSCORE', 'LIMIT', 0, limit, 'WITHSCORES')
for k = 1, #entries, 2 do
  local id = entries[k]
  CALL('DEL', P .. ':events:' .. id)
  CALL('HDEL', job_key(id), 'added_event')
end
if #entries > 0 then CALL('SET', P .. ':events_cursor', entries[#entries]) end
return #entries / 2
