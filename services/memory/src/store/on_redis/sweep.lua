-- Evicts expired sessions. ARGV: 2 now (ms), 3 ttl (ms). Answers how many.
return sweep(tonumber(ARGV[2]), tonumber(ARGV[3]))
