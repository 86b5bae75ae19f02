-- A worker that stopped cleanly leaves the registry. ARGV: worker_id.
CALL('ZREM', P .. ':workers', ARGV[1])
CALL('DEL', P .. ':worker:' .. ARGV[1])
return 1
