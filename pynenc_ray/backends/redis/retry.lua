-- retry: RUNNING -> RETRY -> REGISTERED, queued now or after a delay.
-- ARGV: prefix, id, runner, worker, now, delay_sec, push ('0': the caller re-runs it inline).
local id, runner, worker, now, delay = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local cur, owner, hn, retries = unpack(redis.call('HMGET', ikey(id), 'status', 'owner', 'hn', 'retries'))
if not cur then return redis.error_reply('PYNENC_MISSING invocation ' .. id .. ' is not stored') end
if check(id, cur, 'RETRY', owner, runner, false) == 'DROP' then return 'DROP' end
redis.call('SREM', P .. 'owned:' .. runner, id)
move(id, hn, cur, {'RETRY', 'REGISTERED'}, runner, worker, now, nil,
  {'retries', tonumber(retries or 0) + 1})
flush_counts()
if ARGV[7] == '0' then
  return 'OK'
elseif delay > 0 then
  redis.call('ZADD', P .. 'delayed', tonumber(now) + delay, id)
else
  redis.call('RPUSH', P .. 'queue', id)
end
return 'OK'
