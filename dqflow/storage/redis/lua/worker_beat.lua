-- A worker's beat: its registry hash replaced and its last_seen (server clock) set;
-- workers unseen for ARGV[7] seconds are pruned. ARGV: worker_id, host, pid,
-- started_at_us, concurrency, job types (a JSON array), forget_after_s.
-- Keys: P:workers (worker ids scored by last_seen) and P:worker:<id> (a hash each).
local now = now_us()
local stale = CALL('ZRANGEBYSCORE', P .. ':workers', '-inf', '(' .. fmt(now - tonumber(ARGV[7]) * 1000000))
for _, id in ipairs(stale) do
  CALL('DEL', P .. ':worker:' .. id)
end
if #stale > 0 then CALL('ZREM', P .. ':workers', unpack(stale)) end
local key = P .. ':worker:' .. ARGV[1]
CALL('DEL', key)
CALL('HSET', key, 'worker_id', ARGV[1], 'host', ARGV[2], 'pid', ARGV[3], 'started_at', ARGV[4],
  'last_seen', fmt(now), 'concurrency', ARGV[5], 'job_types', ARGV[6])
CALL('ZADD', P .. ':workers', now, ARGV[1])
return 1
