-- acquire.lua: take ownership of a meeting under a new, strictly higher generation.
-- Prefixed with fence_lib.lua (KEYS, ARGV[1..2] and reply shapes are described there).
--   KEYS: gen, owner [, mh, state] [, audit]    mh and state exactly when ARGV[4] is given
--   ARGV[3] min_generation: decimal >= 0, the highest generation the caller has seen
--   ARGV[4] optional: the MH list (JSON) to store under the new generation
-- Writes gen and owner (and an audit entry, op 'acquire'); with ARGV[4] also mh (and a
-- second audit entry, op 'set', as a separate fenced_set would have appended). The state
-- hash is only looked at, never written.
-- Returns {'OK', new_gen} without ARGV[4], {'OK', new_gen, fresh} with it (fresh: '1' when
-- no state hash existed, so the new owner has no roster to take over; '0' otherwise) |
-- {'MALFORMED', key}; error reply 'generation overflow' past 2^53.
--
-- new_gen = max(stored + 1, min_generation + 1, Redis TIME in microseconds). The clock term
-- keeps generations rising even when Redis lost the gen key (restart without persistence,
-- failover to a lagging replica): an empty Redis still starts above every generation it
-- issued before, as long as its clock has not stepped back.

local gen = load_gen()
if gen == nil then return {'MALFORMED', KEYS[1]} end
local bad = audit_malformed()
if bad then return bad end

local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local new_gen = math.max(gen + 1, tonumber(ARGV[3]) + 1, now_us)
if new_gen > MAX_GEN then return redis.error_reply('generation overflow') end

local g = fmt(new_gen)
redis.call('SET', KEYS[1], g)
redis.call('SET', KEYS[2], ARGV[2])
audit(g, ARGV[2], 'acquire')
if ARGV[4] then
  redis.call('SET', KEYS[3], ARGV[4])
  audit(g, ARGV[2], 'set')
  local fresh = '0'
  if redis.call('EXISTS', KEYS[4]) == 0 then fresh = '1' end
  return {'OK', g, fresh}
end
return {'OK', g}
