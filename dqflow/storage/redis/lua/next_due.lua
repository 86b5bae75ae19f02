-- Microseconds until the earliest pending job of these types is due or a waiting
-- durable job wakes (0 = one is ready now), or -1 when there is neither. ARGV: type count, types... (none = all).
local types = {}
for t = 1, tonumber(ARGV[1]) do types[t] = ARGV[1 + t] end
if #types == 0 then types = CALL('SMEMBERS', P .. ':types') end
local earliest = nil
for _, job_type in ipairs(types) do
  if CALL('ZCARD', P .. ':ready:' .. job_type) > 0 then return 0 end
  local first = CALL('ZRANGE', P .. ':delayed:' .. job_type, 0, 0, 'WITHSCORES')
  if #first > 0 then
    local at = tonumber(first[2])
    if earliest == nil or at < earliest then earliest = at end
  end
end
-- the next durable wake-up (any type: waking it wakes the workers of its type)
local waking = CALL('ZRANGE', P .. ':waits', 0, 0, 'WITHSCORES')
if #waking > 0 then
  local at = tonumber(waking[2])
  if earliest == nil or at < earliest then earliest = at end
end
if earliest == nil then return -1 end
local wait = earliest - now_us()
if wait < 0 then return 0 end
return wait
