-- Stores one turn. ARGV: 2 session, 3 agent, 4 turn ID, 5 message, 6 now (ms), 7 stored_at
-- (ns), 8 max_per_stream, 9 max_total, 10 max_total_bytes, 11 max_sessions, 12 the sweep's
-- cutoff (now - ttl, ms), 13 backstop expiry (ms), 14 instance candidate.
-- Answers {1 stored | 0 repeat | -1 conflict, turns kept in the stream, instance}.
local s, a, t, msg = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
sweep(ARGV[12])
local inst = instance(ARGV[14])
local l, h = lkey(s, a), hkey(s, a)
local kept = redis.call('HGET', h, t)
if kept then
  if message_of(kept) ~= msg then return { -1, 0, inst } end
  return { 0, redis.call('LLEN', l), inst }
end

redis.call('ZADD', LRU, redis.call('INCR', P .. 'seq'), s)
redis.call('ZADD', EXP, ARGV[6], s)
if redis.call('SADD', skey(s), a) == 1 then
  redis.call('HINCRBY', AGENTS, a, 1)
  redis.call('HINCRBY', STATS, 'streams', 1)
end
local n = redis.call('LLEN', l)
if n == 0 or less(redis.call('LINDEX', l, -1), t) then
  redis.call('RPUSH', l, t)
else
  for _, id in ipairs(redis.call('LRANGE', l, 0, -1)) do
    if less(t, id) then
      redis.call('LINSERT', l, 'BEFORE', id, t)
      break
    end
  end
end
redis.call('HSET', h, t, ARGV[7] .. ' ' .. msg)
redis.call('HINCRBY', h, 'bytes', #msg)
redis.call('HINCRBY', STATS, 'memories', 1)
redis.call('HINCRBY', STATS, 'bytes', #msg)

-- The per-stream bound: the smallest turn IDs go.
n = n + 1
local max_per_stream = tonumber(ARGV[8])
if n > max_per_stream then
  local dropped = redis.call('LRANGE', l, 0, n - max_per_stream - 1)
  redis.call('LTRIM', l, n - max_per_stream, -1)
  local bytes = 0
  for _, id in ipairs(dropped) do
    bytes = bytes + #message_of(redis.call('HGET', h, id))
    redis.call('HDEL', h, id)
  end
  redis.call('HINCRBY', h, 'bytes', -bytes)
  redis.call('HINCRBY', STATS, 'memories', -#dropped)
  redis.call('HINCRBY', STATS, 'bytes', -bytes)
  redis.call('HINCRBY', STATS, 'evicted_memories', #dropped)
end

-- The total bounds: least recently written sessions go, maybe this one.
local max_total, max_bytes, max_sessions = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
while stat('memories') > max_total or stat('bytes') > max_bytes
  or redis.call('ZCARD', LRU) > max_sessions do
  local oldest = redis.call('ZRANGE', LRU, 0, 0)
  if #oldest == 0 then break end
  evict(oldest[1])
end

-- The backstop: should no replica sweep, Redis drops what was not written for long.
local keep = tonumber(ARGV[13])
if redis.call('PEXPIRE', skey(s), keep) == 1 then
  for _, agent in ipairs(redis.call('SMEMBERS', skey(s))) do
    redis.call('PEXPIRE', lkey(s, agent), keep)
    redis.call('PEXPIRE', hkey(s, agent), keep)
  end
end
for _, key in ipairs(GLOBALS) do redis.call('PEXPIRE', key, keep) end
return { 1, redis.call('LLEN', l), inst }
