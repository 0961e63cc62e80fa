-- transition: one checked status change (PENDING from REGISTERED for a direct
-- run, RUNNING, PAUSED, REROUTED). Returns 'OK', 'DROP' (a late final write, or
-- a corrupt record, which is failed in place), or an error reply from check().
-- ARGV[2..]: id, new, runner, worker, now, recovery ('1' or '0').
local id, new, runner, worker, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local recovery = ARGV[7] == '1'
local v, why = read(id, {'rck'})
if not v then
  if not why then return redis.error_reply('PYNENC_MISSING invocation ' .. id .. ' is not stored') end
  fail_corrupt(id, why, new == 'PENDING' and 'REGISTERED' or 'RUNNING', runner, runner, now)
  commit()
  return 'DROP'
end
local cur, owner, hn = v[1], v[2], v[3]
-- A write applied whose reply was lost (Redis froze or the link dropped) is sent
-- again by the caller's retry: same status, same owner, and the last history
-- entry is this runner's and worker's. It is applied already, so say so.
if cur == new and owner == runner and OWNED[cur] and applied_last(id, hn, new, runner, worker) then
  return 'OK'
end
if check(id, cur, new, owner, runner, recovery) == 'DROP' then return 'DROP' end
if new == 'REROUTED' then
  reroute(id, owner, runner, worker, now, recovery, false)
elseif new == 'PENDING' then
  move(id, hn, cur, {new}, runner, worker, now, runner)
  redis.call('SADD', P .. 'owned:' .. runner, id)
else
  move(id, hn, cur, {new}, runner, worker, now, owner, nil, v[4])
end
commit()
return 'OK'
