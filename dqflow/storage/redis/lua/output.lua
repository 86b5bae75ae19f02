-- Fenced output write (last write wins). ARGV: id, lease_token, output JSON. Returns 1 or 0.
local key = job_key(ARGV[1])
local job = CALL('HMGET', key, 'status', 'lease_token')
if job[1] ~= 'processing' or job[2] ~= ARGV[2] then return 0 end
local changed = CALL('HGET', key, 'output') ~= ARGV[3]
CALL('HSET', key, 'output', ARGV[3], 'updated_at', fmt(now_us()))
if changed then feed(ARGV[1], 'output', '') end
return 1
