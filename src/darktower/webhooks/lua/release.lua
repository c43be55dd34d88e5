-- release.lua: give up the delivery lease of one partition, if ARGV[1] holds it.
--   KEYS[1] dt:events:{p}:lease
--   ARGV[1] the GC process's holder id
-- Returns 1 when it was released, 0 when another holder (or nobody) held it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
