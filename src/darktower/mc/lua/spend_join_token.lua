-- spend_join_token.lua: spend a join token's jti, once (darktower.mc.join_once).
--   KEYS[1] the token's mark: meeting:{<id>}:jti:<hex> (darktower.fencing.keys.join_token_key)
--   ARGV[1] seconds the mark is kept: the token's remaining life (at least 1)
-- Returns 1 when this call spent the token, 0 when it was spent before.
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 1
end
return 0
