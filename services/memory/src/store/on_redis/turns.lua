-- A stream's turn IDs, ascending. ARGV: 2 session, 3 agent, 4 instance candidate.
-- Answers {instance, id...}.
local out = { instance(ARGV[4]) }
for _, id in ipairs(redis.call('LRANGE', lkey(ARGV[2], ARGV[3]), 0, -1)) do out[#out + 1] = id end
return out
