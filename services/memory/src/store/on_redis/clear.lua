-- Clears. ARGV: 2 what (`all`, `session` or `stream`), 3 session, 4 agent. Answers the turns
-- removed (counted as evicted).
local removed = 0
if ARGV[2] == 'all' then
  for _, s in ipairs(redis.call('ZRANGE', LRU, 0, -1)) do removed = removed + remove_session(s) end
elseif ARGV[2] == 'session' then
  removed = remove_session(ARGV[3])
elseif redis.call('SREM', skey(ARGV[3]), ARGV[4]) == 1 then
  removed = drop_stream(ARGV[3], ARGV[4])
  if redis.call('SCARD', skey(ARGV[3])) == 0 then remove_session(ARGV[3]) end
end
redis.call('HINCRBY', STATS, 'evicted_memories', removed)
return removed
