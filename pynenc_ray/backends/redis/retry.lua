-- retry: RUNNING -> RETRY -> REGISTERED, queued now or after a delay.
-- ARGV[2..]: id, runner, worker, now, delay_sec, push ('0': the caller re-runs it inline).
local id, runner, worker, now, delay = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local rec, why = read(id, {'retries', 'queue', 'prio', 'rck'})
if not rec then
  if not why then return redis.error_reply('PYNENC_MISSING invocation ' .. id .. ' is not stored') end
  fail_corrupt(id, why, 'RUNNING', runner, runner, now)
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
move(id, rec, {'RETRY', 'REGISTERED'}, runner, worker, now, nil,
  {'retries', tonumber(rec.retries or 0) + 1})
local queue = rec.queue or DEFAULT_QUEUE
if ARGV[7] == '0' then
  -- the caller runs it again itself
elseif delay > 0 then
  redis.call('ZADD', P .. 'delayed:' .. queue, tonumber(now) + delay, id)
else
  queue_ids(queue, rec.prio or DEFAULT_PRIORITY, {id})
end
commit()
return 'OK'
