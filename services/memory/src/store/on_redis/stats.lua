-- The counters: {memories, streams, sessions, agents, evicted memories, evicted sessions, bytes}.
return { stat('memories'), stat('streams'), redis.call('ZCARD', LRU), redis.call('HLEN', AGENTS),
  stat('evicted_memories'), stat('evicted_sessions'), stat('bytes') }
