-- transition: one checked status change (PENDING from REGISTERED for a direct
-- run, RUNNING, PAUSED, REROUTED). Returns 'OK', 'DROP' (a late final write),
-- or an error reply from check().
-- ARGV: prefix, id, new, runner, worker, now, recovery ('1' or '0').
local id, new, runner, worker, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local cur, owner, hn = unpack(redis.call('HMGET', ikey(id), 'status', 'owner', 'hn'))
if not cur then return redis.error_reply('PYNENC_MISSING invocation ' .. id .. ' is not stored') end
if check(id, cur, new, owner, runner, ARGV[7] == '1') == 'DROP' then return 'DROP' end
if new == 'REROUTED' then
  reroute(id, runner, worker, now, ARGV[7] == '1')
elseif new == 'PENDING' then
  move(id, hn, cur, {new}, runner, worker, now, runner)
  redis.call('SADD', P .. 'owned:' .. runner, id)
else
  move(id, hn, cur, {new}, runner, worker, now, owner)
end
flush_counts()
return 'OK'
