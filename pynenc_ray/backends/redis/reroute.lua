-- reroute: take back what `owner` holds (all of it, or the ids given) and
-- queue it again; `by` is the owner itself (shutdown) or another runner (a
-- parent whose worker died, recovery), `worker` the label its history entry
-- names. With died each counts a death (toward max_reroutes). With fence the
-- owner is declared gone: fenced first, in this same step (see fence in
-- transitions.lua), so it takes nothing more once its work is rerouted. With
-- isolate (and died: a worker that runs several at once died) a death it
-- shared with others counts for none of them; each is marked to run alone
-- (see reroute in transitions.lua).
-- Returns the rerouted ids.
local owner, by = A.owner, A.by
if A.fence then fence(owner, by) end
local ids = A.ids
if #ids == 0 then  -- all of it: the owner is leaving, so first nothing more is handed to it
  withdraw(owner)
  ids = redis.call('SMEMBERS', P .. 'owned:' .. owner)
end
local shared = A.isolate and A.died and redis.call('SCARD', P .. 'owned:' .. owner) > 1
local out = {}
for _, id in ipairs(ids) do
  local kind = redis.call('TYPE', ikey(id))['ok']
  local cur_owner = kind == 'hash' and redis.call('HGET', ikey(id), 'owner') or nil
  if (cur_owner == owner or kind ~= 'hash')
      and reroute(id, owner, by, A.worker, by ~= owner, A.died, shared) then
    out[#out + 1] = id
    -- handed to the owner and not taken yet (a runner reconciling after a
    -- reconnect gives back what it does not run): not to be taken later
    unhand(owner, id)
  else
    redis.call('SREM', P .. 'owned:' .. owner, id)
  end
end
commit()
return out
