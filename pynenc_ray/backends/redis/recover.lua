-- recover: reroute the work of runners whose last heartbeat is older than
-- dead_after seconds (server time), and forget them; their work counts a death
-- each (toward max_reroutes). One checker at a time: the caller must hold
-- lease:recovery (taken here for lease_ms, PX) or nothing is done.
-- Also trims the registered log of entries older than result_ttl_sec, and the
-- ended log of those older than FINISHED_KEEP_SEC (it serves recent windows);
-- the sorted sets that held them in earlier versions (index, finished) are
-- given result_ttl_sec to live, so a rolling upgrade's older runners keep them
-- a while.
-- Returns the rerouted ids.
local checker = A.checker
local lease = P .. 'lease:recovery'
local holder = redis.call('GET', lease)
if holder and holder ~= checker then return {} end
redis.call('SET', lease, checker, 'PX', A.lease_ms)
local now = clock()
trim_log(P .. 'registered', now - TTL)
trim_log(P .. 'ended', now - math.min(TTL, FINISHED_KEEP_SEC))
redis.call('EXPIRE', P .. 'index', TTL, 'NX')
redis.call('EXPIRE', P .. 'finished', TTL, 'NX')
if now < tonumber(redis.call('GET', P .. 'grace') or '0') then
  return {}  -- after an outage every runner gets dead_after_sec to beat again
end
local dead = redis.call('ZRANGEBYSCORE', P .. 'beats', '-inf', now - A.dead_after)
local out = {}
for _, runner in ipairs(dead) do
  if runner ~= checker then
    withdraw(runner)
    for _, id in ipairs(redis.call('SMEMBERS', P .. 'owned:' .. runner)) do
      if reroute(id, runner, checker, 'recovery', true, true) then out[#out + 1] = id end
    end
    redis.call('DEL', P .. 'owned:' .. runner)
    redis.call('ZREM', P .. 'beats', runner)
    redis.call('HDEL', P .. 'runners', runner)
  end
end
-- Running keys whose holder is no longer owned (a release lost with a corrupt
-- record, or a holder that expired) let their oldest set-aside id go.
for _, rck in ipairs(redis.call('SMEMBERS', P .. 'heldkeys')) do
  local held_by = redis.call('GET', P .. 'lock:' .. rck)
  local st = held_by and redis.pcall('HGET', ikey(held_by), 'status')
  if not (type(st) == 'string' and OWNED[st]) then
    if held_by then redis.call('DEL', P .. 'lock:' .. rck) end
    unblock(rck)
  end
end
commit()
return out
