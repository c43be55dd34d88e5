-- fenced_hset.lua: set and remove fields of the meeting state hash, only under the fence.
-- Prefixed with fence_lib.lua (KEYS, ARGV[1..3] and reply shapes are described there).
--   KEYS: gen, owner, state [, audit]
--   ARGV[4]                 n, the number of field/value pairs that follow
--   ARGV[5 .. 4 + 2n]       field, value, field, value, ...
--   ARGV[5 + 2n .. #ARGV]   fields to remove
-- Writes KEYS[3] (and an audit entry, op 'hset').
-- Returns {'OK', gen} | {'FENCED', stored_gen, stored_owner} | {'MALFORMED', key};
-- MALFORMED names KEYS[3] when the state key holds something other than a hash.

local refused, g = fence()
if refused then return refused end
local t = type_of(KEYS[3])
if t ~= 'hash' and t ~= 'none' then return {'MALFORMED', KEYS[3]} end

local n = tonumber(ARGV[4])
local first_removed = 5 + 2 * n
-- One command per field: unpack() of a long ARGV would overflow the Lua C stack.
for i = 5, first_removed - 1, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
for i = first_removed, #ARGV do
  redis.call('HDEL', KEYS[3], ARGV[i])
end
audit(ARGV[3], ARGV[2], 'hset')
return {'OK', g}
