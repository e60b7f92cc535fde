-- A stream's newest turns. ARGV: 2 session, 3 agent, 4 turns wanted, 5 of them whole (the
-- rest cut to ARGV 6 bytes of message). Answers {turns kept, id, value, id, value...}, newest
-- first.
local l, h = lkey(ARGV[2], ARGV[3]), hkey(ARGV[2], ARGV[3])
local n = redis.call('LLEN', l)
if n == 0 then return { 0 } end
local ids = redis.call('LRANGE', l, -tonumber(ARGV[4]), -1)
local whole, prefix = tonumber(ARGV[5]), tonumber(ARGV[6])
local out = { n }
for i = #ids, 1, -1 do
  local v = redis.call('HGET', h, ids[i])
  if #ids - i >= whole then
    local space = string.find(v, ' ', 1, true)
    v = string.sub(v, 1, space + prefix)
  end
  out[#out + 1] = ids[i]
  out[#out + 1] = v
end
return out
