-- Running concurrency: one invocation at a time per running key (the record
-- field rck). A claim takes the key's lock (may_run) or sets the invocation
-- aside in held:<key>; when the holder stops being owned its lock is released
-- and the oldest invocation set aside is queued again (release, unblock).

-- Take running key `rck` for id, unless another invocation that is owned (PENDING,
-- RUNNING, PAUSED) holds it: then set id aside and say no. A holder that is no
-- longer owned (its release was lost with a corrupt record) is taken over.
local function may_run(id, rck)
  local lock = P .. 'lock:' .. rck
  local holder = redis.call('GET', lock)
  if holder and holder ~= id then
    local st = redis.pcall('HGET', ikey(holder), 'status')
    if type(st) == 'string' and OWNED[st] then
      redis.call('RPUSH', P .. 'held:' .. rck, id)
      redis.call('SADD', P .. 'heldkeys', rck)
      return false
    end
  end
  redis.call('SET', lock, id)
  return true
end

-- Queue the oldest claimable id set aside for running key `rck`, now free. An
-- id found corrupt on the way is failed in place; ids no longer claimable
-- (cancelled meanwhile) are dropped from the list.
local function unblock(rck)
  local held = P .. 'held:' .. rck
  while true do
    local nid = redis.call('LPOP', held)
    if not nid then
      redis.call('SREM', P .. 'heldkeys', rck)
      return
    end
    local rec, why = read(nid, READS.unblock)
    if rec and CLAIMABLE[rec.status] then
      queue_front(rec.queue or DEFAULT_QUEUE, tonumber(rec.prio or DEFAULT_PRIORITY), nid)
      if redis.call('LLEN', held) == 0 then redis.call('SREM', P .. 'heldkeys', rck) end
      return
    elseif why then
      fail_corrupt(nid, why, 'REGISTERED', nil, 'release')
    end
  end
end

-- id no longer runs: free its running key `rck` (if it holds it) and let the
-- next invocation set aside for that key go.
local function release(id, rck)
  local lock = P .. 'lock:' .. rck
  if redis.call('GET', lock) ~= id then return end
  redis.call('DEL', lock)
  unblock(rck)
end
