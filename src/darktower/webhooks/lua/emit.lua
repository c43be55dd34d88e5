-- emit.lua: record one webhook event: the meeting's next sequence number and the stream entry,
-- atomically (both keys share the partition's hash slot, see darktower.webhooks.keys).
--   KEYS[1] the partition stream            dt:events:{p}
--   KEYS[2] the meeting's event counter     dt:events:{p}:m:<meeting_id>
--   ARGV[1] kind: 'acquired' (the MC took the meeting: meeting_started or meeting_moved),
--           'event' (participant_joined / participant_left), 'ended' (meeting_ended)
--   ARGV[2] the emitting MC's fencing generation (decimal)
--   ARGV[3] the emitting MC's id
--   ARGV[4] the event's JSON object without `seq`, `type` and `previous_mc_id`: '{"id":...}'
--   ARGV[5] the type for kinds 'event' and 'ended'
--   ARGV[6] MINID for trimming the stream (ms; entries older are dropped)
--   ARGV[7] seconds the counter is kept after this event
-- Returns {'OK', seq, entry_id, type}
--       | {'STALE', live_gen}   an older generation than the meeting's current one (an MC that
--                              lost the meeting): nothing recorded
--       | {'SAME', live_gen}    'acquired' again under the recorded generation: nothing recorded

local gen = tonumber(ARGV[2])
local live = redis.call('HMGET', KEYS[2], 'gen', 'mc', 'ended')
local live_gen = tonumber(live[1] or '0') or 0
local ended = live[3] == '1'
local kind = ARGV[1]
local etype = ARGV[5]
local extra = ''

if gen < live_gen then return {'STALE', tostring(live[1])} end
if kind == 'acquired' then
  if gen == live_gen and not ended then return {'SAME', tostring(live[1])} end
  if live_gen > 0 and not ended and live[2] then
    etype = 'meeting_moved'
    extra = ',"previous_mc_id":' .. cjson.encode(live[2])
  else
    etype = 'meeting_started'
  end
  redis.call('HSET', KEYS[2], 'gen', ARGV[2], 'mc', ARGV[3], 'ended', '0')
else
  if gen == live_gen and ended then return {'STALE', tostring(live[1])} end
  if gen > live_gen then
    -- The acquire's own event was lost (Redis unreachable then): this generation is current.
    redis.call('HSET', KEYS[2], 'gen', ARGV[2], 'mc', ARGV[3], 'ended', '0')
  end
  if kind == 'ended' then redis.call('HSET', KEYS[2], 'ended', '1') end
end

local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('EXPIRE', KEYS[2], ARGV[7])
local body = '{"seq":' .. string.format('%d', seq) .. ',"type":' .. cjson.encode(etype)
  .. extra .. ',' .. string.sub(ARGV[4], 2)
local entry = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[6], '*', 'e', body)
return {'OK', seq, entry, etype}
