-- Shared by every script of the Redis store (prepended to each). ARGV[1] is the key prefix.
-- Keys: <p>s<len>:<session> the set of the session's agents; <p>s<len>:<session>:l:<agent>
-- the stream's turn IDs, ascending (a list); <p>s<len>:<session>:h:<agent> the stream's
-- turns (turn ID -> "<stored_at ns> <message>") and its `bytes`; <p>lru the sessions by write
-- number; <p>exp the sessions by last write (ms); <p>agents the streams per agent; <p>stats
-- the counters; <p>seq the write number; <p>instance the store's instance ID.
local P = ARGV[1]
local STATS, LRU, EXP, AGENTS = P .. 'stats', P .. 'lru', P .. 'exp', P .. 'agents'
local GLOBALS = { P .. 'seq', LRU, EXP, AGENTS, STATS, P .. 'instance' }

local function skey(s) return P .. 's' .. #s .. ':' .. s end
local function lkey(s, a) return skey(s) .. ':l:' .. a end
local function hkey(s, a) return skey(s) .. ':h:' .. a end

-- Whether turn ID a (decimal, no leading zeros) is smaller than b, exactly (no doubles).
local function less(a, b) return #a < #b or (#a == #b and a < b) end

-- The message part of a stored value.
local function message_of(v) return string.sub(v, string.find(v, ' ', 1, true) + 1) end

local function stat(name) return tonumber(redis.call('HGET', STATS, name) or '0') end

-- Removes one stream (not its place in the session set); answers the turns removed.
local function drop_stream(s, a)
  local l, h = lkey(s, a), hkey(s, a)
  local n = redis.call('LLEN', l)
  local b = tonumber(redis.call('HGET', h, 'bytes') or '0')
  redis.call('DEL', l, h)
  if redis.call('HINCRBY', AGENTS, a, -1) <= 0 then redis.call('HDEL', AGENTS, a) end
  redis.call('HINCRBY', STATS, 'streams', -1)
  redis.call('HINCRBY', STATS, 'memories', -n)
  redis.call('HINCRBY', STATS, 'bytes', -b)
  return n
end

-- Removes one session with its streams; answers the turns removed.
local function remove_session(s)
  local removed = 0
  for _, a in ipairs(redis.call('SMEMBERS', skey(s))) do removed = removed + drop_stream(s, a) end
  redis.call('DEL', skey(s))
  redis.call('ZREM', LRU, s)
  redis.call('ZREM', EXP, s)
  return removed
end

-- Evicts session s, counting it.
local function evict(s)
  local n = remove_session(s)
  redis.call('HINCRBY', STATS, 'evicted_sessions', 1)
  redis.call('HINCRBY', STATS, 'evicted_memories', n)
end

-- Evicts the sessions last written at or before `cutoff` (ms, a string: exact); answers how
-- many.
local function sweep(cutoff)
  local expired = redis.call('ZRANGEBYSCORE', EXP, '-inf', cutoff)
  for _, s in ipairs(expired) do evict(s) end
  return #expired
end

-- The store's instance ID, set to candidate when there is none (an empty Redis).
local function instance(candidate)
  redis.call('SET', P .. 'instance', candidate, 'NX')
  return redis.call('GET', P .. 'instance')
end
