-- Evicts expired sessions. ARGV: 2 the cutoff (now - ttl, ms). Answers how many.
return sweep(ARGV[2])
