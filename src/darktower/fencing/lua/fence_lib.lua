-- fence_lib.lua: helpers shared by the fencing scripts. Redis scripts cannot import, so
-- darktower.fencing.scripts prepends this file to each script before registering it; it
-- defines locals only (Redis 7 refuses globals).
--
-- Every script receives only the KEYS it uses, always led by
--   KEYS[1] meeting:{id}:gen     decimal integer string, < 2^53
--   KEYS[2] meeting:{id}:owner   MC id string
-- then the script's own keys (named in its header) from
--            meeting:{id}:mh      JSON string (opaque here)
--            meeting:{id}:state   hash
-- and, last (KEYS[#KEYS]) and only when ARGV[1] == '1',
--            meeting:{id}:audit   stream
-- and the same first ARGV:
--   ARGV[1] audit flag, '1' or '0'
--   ARGV[2] owner (MC id)
--   ARGV[3] generation (decimal string)
-- Replies are arrays led by a status word:
--   {'OK', gen}                             gen: the generation, decimal string
--   {'FENCED', stored_gen, stored_owner}    each nil when absent; nothing written
--   {'MALFORMED', key}                      the offending key name; nothing written
-- Every check happens before the first write: Redis does not roll back a script that fails
-- half-way, so a late error would leave a partial write behind.

-- Largest integer a Lua number (a double) holds exactly; generations stay below it.
local MAX_GEN = 9007199254740991
local AUDIT = ARGV[1] == '1'
-- The audit stream's key: the last one, passed only when auditing.
local AUDIT_KEY = AUDIT and KEYS[#KEYS] or nil

-- Stored generation as a number (0 when absent), or nil when the value breaks the contract.
local function load_gen()
  local raw = redis.pcall('GET', KEYS[1])
  if raw == false then return 0 end
  if type(raw) ~= 'string' or #raw > 16 or not string.match(raw, '^%d+$') then return nil end
  local n = tonumber(raw)
  if n > MAX_GEN then return nil end
  return n
end

-- Exact decimal text; tostring() would print 1.764e+15 for a microsecond timestamp.
local function fmt(n)
  return string.format('%d', n)
end

local function type_of(key)
  return redis.call('TYPE', key)['ok']
end

-- A MALFORMED reply when the audit stream key holds another type, else nil.
local function audit_malformed()
  if not AUDIT then return nil end
  local t = type_of(AUDIT_KEY)
  if t ~= 'stream' and t ~= 'none' then return {'MALFORMED', AUDIT_KEY} end
  return nil
end

-- Writes pass the caller's ARGV[2] and ARGV[3], not the stored values: the audit records what
-- the writer claimed, so a broken fence shows up as a stale generation in the stream.
local function audit(gen_text, owner, op)
  if AUDIT then
    redis.call('XADD', AUDIT_KEY, '*', 'gen', gen_text, 'owner', owner, 'op', op)
  end
end

-- The fence: returns nil, gen_text when ARGV[2] owns the meeting at generation ARGV[3];
-- otherwise the FENCED or MALFORMED reply to return unchanged.
local function fence()
  local gen = load_gen()
  if gen == nil then return {'MALFORMED', KEYS[1]} end
  local owner = redis.pcall('GET', KEYS[2])
  if type(owner) == 'table' then return {'MALFORMED', KEYS[2]} end
  if gen == 0 or owner ~= ARGV[2] or gen ~= tonumber(ARGV[3]) then
    local stored_gen = false
    if gen > 0 then stored_gen = fmt(gen) end
    return {'FENCED', stored_gen, owner}
  end
  local bad = audit_malformed()
  if bad then return bad end
  return nil, fmt(gen)
end
