-- Record layout ARGV[1] in P:layout unless a newer one is there (a newer dqflow's); returns
-- the layout recorded afterwards.
local key = P .. ':layout'
local stored = tonumber(CALL('GET', key) or '0')
if stored == nil or stored < tonumber(ARGV[1]) then
  CALL('SET', key, ARGV[1])
end
return CALL('GET', key)
