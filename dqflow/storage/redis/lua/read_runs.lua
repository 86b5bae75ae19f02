-- Read workflow runs and step jobs for a settle's planning (_workflows.py) in one call, not a
-- command per key. ARGV: the count of run fields, those fields, the count of runs, their ids,
-- then the ids of the jobs whose stored output is read.
-- Returns per run the values of its fields (HMGET: false where absent), then per job its
-- output (false: none). Not prefixed with _lib.lua (scripts.py's BARE): KEYS[1] is the prefix.
local P = KEYS[1]
local CALL = redis.call
local nfields = tonumber(ARGV[1])
local fields = {unpack(ARGV, 2, 1 + nfields)}
local at = 2 + nfields
local nruns = tonumber(ARGV[at])
local out = {}
for r = at + 1, at + nruns do
  out[#out + 1] = CALL('HMGET', P .. ':wfrun:' .. ARGV[r], unpack(fields))
end
for j = at + nruns + 1, #ARGV do
  out[#out + 1] = CALL('HGET', P .. ':job:' .. ARGV[j], 'output')
end
return out
