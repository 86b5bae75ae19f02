-- Add one job unless a duplicate exists (Storage.add_unique), in one script.
-- Loaded after add_many.lua wrapped as `add_many(ARGV)` (scripts.py).
-- P:unique is a hash: unique key -> the newest job added with it; that job's hash keeps
-- the key in its `unique_key` field, so clean-up (prune.lua) can drop the entry.
-- ARGV: key, within (ms, '' = ever), statuses (comma-separated, '' = any), then add_many's
-- arguments for the job. Returns add_many's reply: id, created (1/0).
local key = ARGV[1]
local newest = CALL('HGET', P .. ':unique', key)
if newest then
  local job = CALL('HMGET', job_key(newest), 'status', 'created_at')
  if job[1] then
    local duplicate = true
    if ARGV[3] ~= '' then
      duplicate = string.find(',' .. ARGV[3] .. ',', ',' .. job[1] .. ',', 1, true) ~= nil
    end
    if duplicate and ARGV[2] ~= '' then
      duplicate = now_us() - tonumber(job[2]) < tonumber(ARGV[2]) * 1000
    end
    if duplicate then return {tonumber(newest), 0} end
  end
end
local args = {}
for k = 4, #ARGV do args[#args + 1] = ARGV[k] end
local out = add_many(args)
if out[1] ~= -1 and out[2] == 1 then
  local id = fmt(out[1])
  CALL('HSET', P .. ':unique', key, id)
  CALL('HSET', job_key(id), 'unique_key', key)
end
return out
