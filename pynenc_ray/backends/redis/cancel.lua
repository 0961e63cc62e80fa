-- cancel: move each invocation that is not final yet to CANCELLED, whoever owns
-- it, release it from its owner's set (and inbox: see handoff.lua)
-- and start its TTL. A queued or delayed copy of its id stays where it is and
-- is skipped when a claim pops it (it is no longer claimable); an owner that
-- finishes it later has its write dropped.
-- The error field holds why, for waiters (InvocationCancelledError). A corrupt
-- record is failed in place instead.
-- ARGV[2..]: by (who asks), worker, now, error document, then the ids.
-- Returns 1 per id cancelled here, 0 when it was final already or is missing.
local by, worker, now, doc = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local out = {}
for i = 6, #ARGV do
  local id = ARGV[i]
  local rec, why = read(id, {'rck'})
  if rec and not FINAL[rec.status] then
    if OWNED[rec.status] and rec.owner and rec.owner ~= '' then
      redis.call('SREM', P .. 'owned:' .. rec.owner, id)
      unhand(rec.owner, id)  -- handed to a worker that has not taken it: it never starts
    end
    move(id, rec, {'CANCELLED'}, by, worker, now, nil, {'error', doc})
    redis.call('EXPIRE', ikey(id), TTL)
    announce(id, 'CANCELLED', doc)
    out[#out + 1] = 1
  else
    if why then fail_corrupt(id, why, 'REGISTERED', nil, by, now) end
    out[#out + 1] = 0
  end
end
commit()
return out
