-- fenced_delete.lua: release a meeting: delete owner, mh and state, only under the fence.
-- Prefixed with fence_lib.lua (KEYS, ARGV[1..3] and reply shapes are described there).
--   KEYS: gen, owner, mh, state [, audit]
-- The gen key stays, so that the next acquire still issues a higher generation; the audit
-- stream stays too (an audit entry, op 'delete', is appended).
-- Returns {'OK', gen} | {'FENCED', stored_gen, stored_owner} | {'MALFORMED', key}.

local refused, g = fence()
if refused then return refused end

redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
audit(ARGV[3], ARGV[2], 'delete')
return {'OK', g}
