-- Fenced progress write. ARGV: id, lease_token, progress (0..100). Returns 1 or 0.
local key = job_key(ARGV[1])
local job = CALL('HMGET', key, 'status', 'lease_token')
if job[1] ~= 'processing' or job[2] ~= ARGV[2] then return 0 end
CALL('HSET', key, 'progress', ARGV[3], 'updated_at', fmt(now_us()))
return 1
