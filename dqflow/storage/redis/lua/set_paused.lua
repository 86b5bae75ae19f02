-- Pause or resume a schedule (Storage.set_schedule_paused); see claim_tick.lua for P:schedules.
-- ARGV: name, paused (0/1). Returns the schedule's state as JSON.
local name = ARGV[1]
local raw = CALL('HGET', P .. ':schedules', name)
local state = {}
if raw then state = cjson.decode(raw) end
state.paused = ARGV[2] == '1'
local text = cjson.encode(state)
CALL('HSET', P .. ':schedules', name, text)
return text
