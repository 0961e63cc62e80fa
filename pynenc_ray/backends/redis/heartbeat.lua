-- heartbeat: a runner says it is alive, on the server's clock so that hosts
-- with skewed clocks agree on who is dead.
-- ARGV[3..]: runner, info_json.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('HSET', P .. 'runners', ARGV[3], ARGV[4])
redis.call('ZADD', P .. 'beats', now, ARGV[3])
return tostring(now)
