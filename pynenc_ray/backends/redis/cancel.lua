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
  local v, why = read(id, {'rck'})
  if v and not FINAL[v[1]] then
    if OWNED[v[1]] and v[2] and v[2] ~= '' then
      redis.call('SREM', P .. 'owned:' .. v[2], id)
      unhand(v[2], id)  -- handed to a worker that has not taken it: it never starts
    end
    move(id, v[3], v[1], {'CANCELLED'}, by, worker, now, nil, {'error', doc}, v[4])
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
