-- Read a token with its job's status in one step. ARGV: token id. Returns {} (no token) or
-- {token hash as a flat list, job status ('' when the job is gone)}.
local token = CALL('HGETALL', P .. ':token:' .. ARGV[1])
if #token == 0 then return {} end
local job_id = CALL('HGET', P .. ':token:' .. ARGV[1], 'job_id')
return {token, CALL('HGET', job_key(job_id), 'status') or ''}
