-- claim: take up to n invocations as PENDING owned by runner, in one step, so a
-- crash never leaves an id popped but unowned. With start = 1 (a runner that
-- starts them at once) they go on to RUNNING in the same step. Due delayed
-- retries are queued first; ids the runner's BLMOVE parked in inflight:<runner>
-- come before the queue. Ids no longer claimable (final, expired) are skipped.
-- ARGV: prefix, runner, worker, now, n, start.
-- Returns a flat list: id, task, args, retries, reroutes per claimed invocation.
local runner, worker, now, n = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local moves = ARGV[6] == '1' and {'PENDING', 'RUNNING'} or {'PENDING'}
local due = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
if #due > 0 then
  redis.call('ZREM', P .. 'delayed', unpack(due))
  push_all('RPUSH', P .. 'queue', due)
end
local out, owned = {}, {}
for _, src in ipairs({P .. 'inflight:' .. runner, P .. 'queue'}) do
  while #owned < n do
    local ids = redis.call('LPOP', src, n - #owned)
    if not ids then break end
    for _, id in ipairs(ids) do
      local f = redis.call('HMGET', ikey(id), 'status', 'task', 'args', 'retries', 'reroutes', 'hn')
      if f[1] and CLAIMABLE[f[1]] then
        move(id, f[6], f[1], moves, runner, worker, now, runner)
        owned[#owned + 1] = id
        out[#out + 1] = id
        out[#out + 1] = f[2]
        out[#out + 1] = f[3]
        out[#out + 1] = f[4] or 0
        out[#out + 1] = f[5] or 0
      end
    end
  end
end
if #owned > 0 then push_all('SADD', P .. 'owned:' .. runner, owned) end
flush_counts()
return out
