-- fenced_set.lua: SET one of the meeting's string keys, only under the fence.
-- Prefixed with fence_lib.lua (KEYS, ARGV[1..3] and reply shapes are described there).
--   KEYS: gen, owner, mh [, audit]
--   ARGV[4] name of the key to set: 'mh' (KEYS[3])
--   ARGV[5] value
-- Writes the named key (and an audit entry, op 'set').
-- Returns {'OK', gen} | {'FENCED', stored_gen, stored_owner} | {'MALFORMED', key};
-- error reply 'unknown name' for any other ARGV[4].

local targets = {mh = KEYS[3]}
local target = targets[ARGV[4]]
if target == nil then return redis.error_reply('unknown name') end

local refused, g = fence()
if refused then return refused end

redis.call('SET', target, ARGV[5])
audit(ARGV[3], ARGV[2], 'set')
return {'OK', g}
