-- Storage.prune_flow_control: delete the rate windows of the keys in ARGV that have ended
-- (P:rate:end, P:rate:starts), by this script's clock, as the claim reads it: a claim that
-- finds no window starts a fresh one, exactly as with the ended one. (A concurrency key's
-- P:conc:active entry is deleted by free_slot when its count reaches 0; a parked set
-- disappears with its last member.) Returns how many windows were deleted.
local now = now_us()
local deleted = 0
for _, rate_key in ipairs(ARGV) do
  local window_end = tonumber(CALL('HGET', P .. ':rate:end', rate_key) or '0')
  if window_end <= now then
    deleted = deleted + CALL('HDEL', P .. ':rate:end', rate_key)
    CALL('HDEL', P .. ':rate:starts', rate_key)
  end
end
return deleted
