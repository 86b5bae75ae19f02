-- Claim one tick of a schedule, once for all workers (Storage.claim_tick).
-- Loaded after add_many.lua wrapped as `add_many(ARGV)` (scripts.py), so the tick's job
-- goes in exactly as any add, in this same script.
-- P:schedules is a hash: schedule name -> JSON {last_tick (us, string), last_job_id
-- (string), paused (bool)}.
-- ARGV: name, tick (us), skip_while_unfinished (0/1), has_job (0/1), then add_many's
-- arguments for the job. Returns verdict, job id ('' = none).
local name, tick = ARGV[1], tonumber(ARGV[2])
local raw = CALL('HGET', P .. ':schedules', name)
local state = {paused = false}
if raw then state = cjson.decode(raw) end
if state.last_tick and tonumber(state.last_tick) >= tick then return {'taken', ''} end

local verdict, job_id = nil, state.last_job_id
local unfinished = {pending = true, processing = true, waiting = true}
if state.paused then
  verdict = 'paused'
elseif ARGV[4] ~= '1' then
  verdict = 'skipped'
elseif ARGV[3] == '1' and job_id and unfinished[CALL('HGET', job_key(job_id), 'status') or ''] then
  verdict = 'overlap'
else
  local args = {}
  for k = 5, #ARGV do args[#args + 1] = ARGV[k] end
  local out = add_many(args)
  job_id = fmt(out[1])
  if out[2] == 1 then verdict = 'enqueued' else verdict = 'taken' end
end
state.last_tick = fmt(tick)
state.last_job_id = job_id
CALL('HSET', P .. ':schedules', name, cjson.encode(state))
return {verdict, job_id or ''}
