-- heartbeat: `runner` says it is alive (with `info`, its JSON self-description),
-- on the server's clock so that hosts with skewed clocks agree on who is dead.
-- When no runner of the app has beaten for over half of dead_after seconds
-- (Redis was down or frozen, or the network cut everyone off), nobody could
-- beat, so recovery waits one dead_after (key 'grace') for the live runners to
-- beat again before judging any dead.
-- A fenced runner (see fence in transitions.lua) is not listed again: its beat
-- raises PYNENC_FENCED, which tells it to stop.
-- Returns the server time of the beat.
refuse_fenced(A.runner, 'beat again')
local now = clock()
local dead_after = A.dead_after
local last = tonumber(redis.call('GET', P .. 'lastbeat') or '0')
if last > 0 and now - last > dead_after / 2 then
  redis.call('SET', P .. 'grace', tostring(now + dead_after), 'PX', math.ceil(dead_after * 1000))
end
redis.call('SET', P .. 'lastbeat', tostring(now))
redis.call('HSET', P .. 'runners', A.runner, A.info)
redis.call('ZADD', P .. 'beats', now, A.runner)
return tostring(now)
