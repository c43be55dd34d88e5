-- fenced_delete.lua: release a meeting: delete owner, mh and state, only under the fence.
-- Prefixed with fence_lib.lua (KEYS, ARGV[1..3] and reply shapes are described there).
--   KEYS: gen, owner, mh, state [, audit]
--   ARGV[4] optional: seconds the gen key is kept (EXPIRE); absent: kept for ever
-- The gen key stays for ARGV[4] seconds (the next acquire's SET clears the expiry): within
-- that time a re-acquire counts on it even if the clock stepped back; after it the clock term
-- of acquire.lua keeps generations rising. The audit stream stays (an audit entry, op
-- 'delete', is appended).
-- Returns {'OK', gen} | {'FENCED', stored_gen, stored_owner} | {'MALFORMED', key}.

local refused, g = fence()
if refused then return refused end

redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
if ARGV[4] then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
audit(ARGV[3], ARGV[2], 'delete')
return {'OK', g}
