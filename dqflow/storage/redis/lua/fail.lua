-- Fenced failed attempt. ARGV: count, then per job: id, lease_token, error, reason,
-- retry_at ('' = failed for good, else pending again at that time in microseconds).
-- Returns 1 (applied) or 0 (rejected) per job.
local now = now_us()
local now_s = fmt(now)
local out = {}
local i = 2
for n = 1, tonumber(ARGV[1]) do
  local id, token, err, reason, retry_at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = job_key(id)
  local job = CALL('HMGET', key, 'status', 'lease_token', 'attempts', 'error_history', 'job_type', 'priority')
  if job[1] == 'processing' and job[2] == token then
    local history = append_json(job[4], error_entry(job[3], err, reason, now))
    CALL('HSET', key, 'error_history', history, 'failure_reason', reason, 'last_failed_at', now_s,
      'updated_at', now_s)
    CALL('HDEL', key, 'lease_expires_at')
    CALL('ZREM', P .. ':processing', id)
    local will_retry = retry_at ~= ''
    if will_retry then
      local run_at = tonumber(retry_at)
      CALL('HSET', key, 'status', 'pending', 'run_at', fmt(run_at))
      move_status(id, 'processing', 'pending')
      if enqueue(id, job[5], tonumber(job[6]), run_at, now) then wake(job[5], 1) end
    else
      CALL('HSET', key, 'status', 'failed')
      move_status(id, 'processing', 'failed')
    end
    add_event(id, 'failed', now, '{"attempt":' .. job[3] .. ',"error":' .. cjson.encode(err) .. ',"reason":'
      .. cjson.encode(reason) .. ',"will_retry":' .. (will_retry and 'true' or 'false') .. '}')
    out[n] = 1
  else
    out[n] = 0
  end
  i = i + 5
end
return out
