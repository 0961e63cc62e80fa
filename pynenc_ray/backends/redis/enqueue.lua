-- enqueue: store each call as REGISTERED and (if push = 1) append it to the queue.
-- ARGV: prefix, runner, worker, now, push, then (id, task, args, parent) per call.
local runner, worker, now, push = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n = 0
for i = 6, #ARGV, 4 do
  local id = ARGV[i]
  redis.call('HSET', ikey(id), 'task', ARGV[i + 1], 'args', ARGV[i + 2],
    'status', 'REGISTERED', 'retries', 0, 'reroutes', 0)
  if ARGV[i + 3] ~= '' then redis.call('HSET', ikey(id), 'parent', ARGV[i + 3]) end
  record(id, 'REGISTERED', runner, worker, now)
  redis.call('ZADD', P .. 'index', now, id)
  if push == '1' then redis.call('RPUSH', P .. 'queue', id) end
  n = n + 1
end
redis.call('HINCRBY', P .. 'counts', 'REGISTERED', n)
return n
