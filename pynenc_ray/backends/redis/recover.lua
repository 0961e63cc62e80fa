-- recover: reroute the work of runners whose last heartbeat is older than
-- dead_after_sec, and forget them; their work counts a death each (toward
-- max_reroutes). One checker at a time: the caller must hold lease:recovery
-- (taken here with NX and a TTL) or nothing is done.
-- Also prunes the timeline index of records older than result_ttl_sec.
-- ARGV[2..]: checker, dead_after_sec, lease_ms, now. Returns rerouted ids.
local checker, dead_after, lease_ms, now = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local lease = P .. 'lease:recovery'
local holder = redis.call('GET', lease)
if holder and holder ~= checker then return {} end
redis.call('SET', lease, checker, 'PX', lease_ms)
local server_now = clock()
redis.call('ZREMRANGEBYSCORE', P .. 'index', '-inf', server_now - TTL)
if server_now < tonumber(redis.call('GET', P .. 'grace') or '0') then
  return {}  -- after an outage every runner gets dead_after_sec to beat again
end
local cutoff = server_now - dead_after
local dead = redis.call('ZRANGEBYSCORE', P .. 'beats', '-inf', cutoff)
local out = {}
for _, runner in ipairs(dead) do
  if runner ~= checker then
    withdraw(runner)
    for _, id in ipairs(redis.call('SMEMBERS', P .. 'owned:' .. runner)) do
      if reroute(id, runner, checker, 'recovery', now, true, true) then out[#out + 1] = id end
    end
    redis.call('DEL', P .. 'owned:' .. runner)
    redis.call('ZREM', P .. 'beats', runner)
    redis.call('HDEL', P .. 'runners', runner)
  end
end
-- Running keys whose holder is no longer owned (a release lost with a corrupt
-- record, or a holder that expired) let their oldest set-aside id go.
for _, rck in ipairs(redis.call('SMEMBERS', P .. 'heldkeys')) do
  local holder = redis.call('GET', P .. 'lock:' .. rck)
  local st = holder and redis.pcall('HGET', ikey(holder), 'status')
  if not (type(st) == 'string' and OWNED[st]) then
    if holder then redis.call('DEL', P .. 'lock:' .. rck) end
    unblock(rck, now)
  end
end
commit()
return out
