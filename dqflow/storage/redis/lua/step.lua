-- Fenced: store a durable handler's step. ARGV: id, lease_token, member ('"name":{...}',
-- appended to the job's `steps` JSON text as written), then for ctx.create_token the
-- token to create in the same step: token id ('' = none), signal, schema (JSON, '' =
-- none), timeout_at (us, '' = none). Returns 1 (stored) or 0 (the job is not held).
local id, member, token_id = ARGV[1], ARGV[3], ARGV[4]
local key = job_key(id)
local job = CALL('HMGET', key, 'status', 'lease_token', 'steps')
if job[1] ~= 'processing' or job[2] ~= ARGV[2] then return 0 end
local steps = job[3]
if not steps or steps == '{}' then
  steps = '{' .. member .. '}'
else
  steps = string.sub(steps, 1, -2) .. ',' .. member .. '}'
end
local now_s = fmt(now_us())
CALL('HSET', key, 'steps', steps, 'updated_at', now_s)
if token_id and token_id ~= '' then
  local token = {'job_id', id, 'status', 'pending', 'created_at', now_s}
  if ARGV[5] ~= '' then token[#token + 1] = 'signal'; token[#token + 1] = ARGV[5] end
  if ARGV[6] ~= '' then token[#token + 1] = 'schema'; token[#token + 1] = ARGV[6] end
  if ARGV[7] ~= '' then token[#token + 1] = 'timeout_at'; token[#token + 1] = ARGV[7] end
  CALL('HSET', P .. ':token:' .. token_id, unpack(token))
  CALL('SADD', P .. ':tokens:' .. id, token_id)  -- the job's tokens, deleted with it (prune.lua)
end
return 1
