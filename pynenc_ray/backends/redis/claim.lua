-- claim: take up to n invocations as PENDING owned by runner, in one step, so a
-- crash never leaves an id popped but unowned. Due delayed retries are queued
-- first; ids the runner's BLMOVE parked in inflight:<runner> come before the queue.
-- Ids no longer claimable (final, expired) are skipped.
-- ARGV: prefix, runner, worker, now, n.
-- Returns a flat list: id, task, args, retries, reroutes per claimed invocation.
local runner, worker, now, n = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local due = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', P .. 'delayed', id)
  redis.call('RPUSH', P .. 'queue', id)
end
local out = {}
local got = 0
local sources = {P .. 'inflight:' .. runner, P .. 'queue'}
for _, src in ipairs(sources) do
  while got < n do
    local id = redis.call('LPOP', src)
    if not id then break end
    local f = redis.call('HMGET', ikey(id), 'status', 'task', 'args', 'retries', 'reroutes')
    if f[1] and CLAIMABLE[f[1]] then
      redis.call('HSET', ikey(id), 'owner', runner)
      redis.call('SADD', P .. 'owned:' .. runner, id)
      set_status(id, f[1], 'PENDING', runner, worker, now)
      out[#out + 1] = id
      out[#out + 1] = f[2]
      out[#out + 1] = f[3]
      out[#out + 1] = f[4]
      out[#out + 1] = f[5]
      got = got + 1
    end
  end
end
return out
