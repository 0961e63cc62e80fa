-- enqueue: store each call as REGISTERED and (if push = 1) append them to the
-- queue. One HSET per call; the queue and the index get one command per batch.
-- An id already stored is left alone: a retried enqueue never resets a record.
-- The index is scored by the server's clock, as the history is.
-- ARGV[2..]: runner, worker, push, then (id, task, args, parent) per call.
local runner, worker, push = ARGV[2], ARGV[3], ARGV[4]
local ids, index = {}, {}
local h0 = entry('REGISTERED', runner, worker)
local now = clock()
for i = 5, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('EXISTS', ikey(id)) == 0 then
    if ARGV[i + 3] == '' then  -- retries, reroutes and deaths read as 0 until set
      redis.call('HSET', ikey(id), 'task', ARGV[i + 1], 'args', ARGV[i + 2],
        'status', 'REGISTERED', 'h0', h0, 'hn', 1)
    else
      redis.call('HSET', ikey(id), 'task', ARGV[i + 1], 'args', ARGV[i + 2],
        'status', 'REGISTERED', 'parent', ARGV[i + 3], 'h0', h0, 'hn', 1)
    end
    ids[#ids + 1] = id
    index[#index + 1] = now
    index[#index + 1] = id
  end
end
if #ids == 0 then return 0 end
if push == '1' then push_all('RPUSH', P .. 'queue', ids) end
push_all('ZADD', P .. 'index', index)
count('REGISTERED', #ids)
commit()
return #ids
