-- lease.lua: take or renew the delivery lease of one partition.
--   KEYS[1] dt:events:{p}:lease
--   ARGV[1] the GC process's holder id, ARGV[2] lease length in ms
-- Returns 1 when ARGV[1] holds the lease now (taken or renewed), 0 when another holder does.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
