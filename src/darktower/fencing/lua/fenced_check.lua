-- fenced_check.lua: does ARGV[2] own the meeting at generation ARGV[3]? Writes nothing.
-- Prefixed with fence_lib.lua (KEYS, ARGV[1..3] and reply shapes are described there);
-- the caller passes ARGV[1] = '0', a check is not audited.
--   KEYS: gen, owner
-- Returns {'OK', gen} | {'FENCED', stored_gen, stored_owner} | {'MALFORMED', key}.

local refused, g = fence()
if refused then return refused end
return {'OK', g}
