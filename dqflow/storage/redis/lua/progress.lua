-- Fenced progress write. ARGV: id, lease_token, progress (0..100). Returns 1 or 0.
local key = job_key(ARGV[1])
local job = CALL('HMGET', key, 'status', 'lease_token')
if job[1] ~= 'processing' or job[2] ~= ARGV[2] then return 0 end
local previous = CALL('HGET', key, 'progress')
CALL('HSET', key, 'progress', ARGV[3], 'updated_at', fmt(now_us()))
if previous ~= ARGV[3] then feed(ARGV[1], 'progress', ARGV[3]) end
return 1
