-- Jobs whose lease expired: back to pending (a `reclaimed` event), or failed with
-- reason lease_expired once attempts are used up (cancelling its waiting dependents, adding
-- its dead-letter job). Token bumped and the concurrency slot given back either way.
-- ARGV: limit, and '1' to leave workflow step jobs on their last attempt to the workflow
-- path (workflow.lua fails them and moves their run in one script). Returns id, status pairs.
local now = now_us()
local now_s = fmt(now)
local out = {}
local expired = CALL('ZRANGEBYSCORE', P .. ':processing', '-inf', '(' .. fmt(now), 'LIMIT', 0, tonumber(ARGV[1]))
local leave_steps = ARGV[2] == '1'
for _, id in ipairs(expired) do
  local key = job_key(id)
  local job = CALL('HMGET', key, 'status', 'attempts', 'max_attempts', 'locked_by', 'job_type', 'priority',
    'error_history', 'output', 'progress', 'workflow_run_id')
  local left = leave_steps and job[10] and tonumber(job[2]) >= tonumber(job[3])
  if not left then CALL('ZREM', P .. ':processing', id) end
  if job[1] == 'processing' and not left then
    local attempts, worker = tonumber(job[2]), job[4] or ''
    CALL('HINCRBY', key, 'lease_token', 1)
    CALL('HDEL', key, 'lease_expires_at')
    free_slot(id)
    if attempts >= tonumber(job[3]) then
      local err = 'worker ' .. worker .. ' stopped renewing its lease and the job has used all '
        .. job[3] .. ' attempts'
      CALL('HSET', key, 'status', 'failed', 'failure_reason', 'lease_expired', 'last_failed_at', now_s,
        'updated_at', now_s, 'error_history', append_json(job[7],
        error_entry(job[2], err, 'lease_expired', now, nil, job[8], job[9])))
      move_status(id, 'processing', 'failed')
      add_event(id, 'failed', now, '{"attempt":' .. job[2] .. ',"error":' .. cjson.encode(err)
        .. ',"reason":"lease_expired","will_retry":false}')
      cancel_dependents(id, now)
      add_dead_letter(id, now)
      out[#out + 1] = id
      out[#out + 1] = 'failed'
    else
      CALL('HSET', key, 'status', 'pending', 'run_at', now_s, 'updated_at', now_s)
      CALL('HDEL', key, 'locked_by', 'locked_at')
      move_status(id, 'processing', 'pending')
      enqueue(id, job[5], tonumber(job[6]), now, now)
      wake(job[5], 1)
      add_event(id, 'reclaimed', now, '{"attempt":' .. job[2] .. ',"previous_worker":'
        .. (job[4] and cjson.encode(job[4]) or 'null') .. '}')
      out[#out + 1] = id
      out[#out + 1] = 'pending'
    end
  end
end
return out
