-- heartbeat: a runner says it is alive, on the server's clock so that hosts
-- with skewed clocks agree on who is dead. When no runner of the app has beaten
-- for over half of dead_after_sec (Redis was down or frozen, or the network
-- cut everyone off), nobody could beat, so recovery waits one dead_after_sec
-- (key 'grace') for the live runners to beat again before judging any dead.
-- ARGV[2..]: runner, info_json, dead_after_sec.
local now = clock()
local dead_after = tonumber(ARGV[4])
local last = tonumber(redis.call('GET', P .. 'lastbeat') or '0')
if last > 0 and now - last > dead_after / 2 then
  redis.call('SET', P .. 'grace', tostring(now + dead_after), 'PX', math.ceil(dead_after * 1000))
end
redis.call('SET', P .. 'lastbeat', tostring(now))
redis.call('HSET', P .. 'runners', ARGV[2], ARGV[3])
redis.call('ZADD', P .. 'beats', now, ARGV[2])
return tostring(now)
