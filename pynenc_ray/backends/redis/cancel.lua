-- cancel: move each invocation of `ids` that is not final yet to CANCELLED,
-- whoever owns it, release it from its owner's set (and inbox: see
-- handoff.lua) and start its TTL. A queued or delayed copy of its id stays
-- where it is and is skipped when a claim pops it (it is no longer claimable);
-- an owner that finishes it later has its write dropped.
-- `by` (who asks) and its `worker` sign the history entry; `error` is the
-- document waiters get (InvocationCancelledError). A corrupt record is failed
-- in place instead.
-- Returns 1 per id cancelled here, 0 when it was final already or is missing.
local out = {}
for _, id in ipairs(A.ids) do
  local rec, why = read(id, READS.plain)
  if rec and not FINAL[rec.status] then
    if OWNED[rec.status] and rec.owner and rec.owner ~= '' then
      redis.call('SREM', P .. 'owned:' .. rec.owner, id)
      unhand(rec.owner, id)  -- handed to a worker that has not taken it: it never starts
    end
    move(id, rec, 'CANCELLED', A.by, A.worker, nil, 'error', A.error)
    redis.call('EXPIRE', ikey(id), TTL)
    announce(id, 'CANCELLED', A.error)
    out[#out + 1] = 1
  else
    if why then fail_corrupt(id, why, 'REGISTERED', nil, A.by) end
    out[#out + 1] = 0
  end
end
commit()
return out
