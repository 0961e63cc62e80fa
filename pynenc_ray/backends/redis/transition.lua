-- transition: one checked status change of invocation id to `new` (PENDING
-- from REGISTERED for a direct run, RUNNING, PAUSED, REROUTED), asked by
-- runner's worker; with recovery, a runner rerouting another's invocation.
-- Returns 'OK', 'DROP' (a late final write, or a corrupt record, which is
-- failed in place), or an error reply from check().
local id, new, runner, worker = A.id, A.new, A.runner, A.worker
-- taking it (a direct run) is refused to a fenced runner (see fence in transitions.lua)
if new == 'PENDING' then refuse_fenced(runner, 'take invocation ' .. id) end
local rec, why = read(id, READS.plain)
if not rec then
  if not why then return redis.error_reply('PYNENC_MISSING invocation ' .. id .. ' is not stored') end
  fail_corrupt(id, why, new == 'PENDING' and 'REGISTERED' or 'RUNNING', runner, runner)
  commit()
  return 'DROP'
end
-- A write applied whose reply was lost (Redis froze or the link dropped) is sent
-- again by the caller's retry: same status, same owner, and the last history
-- entry is this runner's and worker's. It is applied already, so say so.
if rec.status == new and rec.owner == runner and OWNED[rec.status]
    and applied_last(id, rec.hn, new, runner, worker) then
  return 'OK'
end
if check(id, rec.status, new, rec.owner, runner, A.recovery) == 'DROP' then return 'DROP' end
if new == 'REROUTED' then
  reroute(id, rec.owner, runner, worker, A.recovery, false)
elseif new == 'PENDING' then
  move(id, rec, new, runner, worker, runner)
  redis.call('SADD', P .. 'owned:' .. runner, id)
else
  move(id, rec, new, runner, worker, rec.owner)
end
commit()
return 'OK'
