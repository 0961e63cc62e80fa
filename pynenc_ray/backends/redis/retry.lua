-- retry: invocation id, RUNNING and owned by runner, goes RETRY -> REGISTERED,
-- asked by runner's worker, and waits in its queue again: at once, or after
-- `delay` seconds (in its queue's delayed set, due at server time + delay);
-- without push the caller re-runs it inline and it is not queued.
-- Returns 'OK', 'DROP' (no longer this runner's, or a corrupt record, which is
-- failed in place), or an error reply.
local id, runner, worker = A.id, A.runner, A.worker
local rec, why = read(id, READS.retry)
if not rec then
  if not why then return redis.error_reply('PYNENC_MISSING invocation ' .. id .. ' is not stored') end
  fail_corrupt(id, why, 'RUNNING', runner, runner)
  commit()
  return 'DROP'
end
-- Sent again after a lost reply: the retry is in place already (this runner's
-- and worker's REGISTERED is the last entry and nobody has claimed it since).
if rec.status == 'REGISTERED' and applied_last(id, rec.hn, 'REGISTERED', runner, worker) then
  return 'OK'
end
if check(id, rec.status, 'RETRY', rec.owner, runner, false) == 'DROP' then return 'DROP' end
redis.call('SREM', P .. 'owned:' .. runner, id)
move(id, rec, {'RETRY', 'REGISTERED'}, runner, worker, nil,
  'retries', tonumber(rec.retries or 0) + 1)
local queue = rec.queue or DEFAULT_QUEUE
if not A.push then
  -- the caller runs it again itself
elseif A.delay > 0 then
  redis.call('ZADD', P .. 'delayed:' .. queue, clock() + A.delay, id)
else
  queue_ids(queue, rec.prio or DEFAULT_PRIORITY, {id})
end
commit()
return 'OK'
