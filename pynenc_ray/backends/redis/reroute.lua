-- reroute: take back what `owner` holds (all of it, or the ids given) and
-- queue it again; `by` is the owner itself (shutdown) or another runner (a
-- parent whose worker died, recovery). died = '1' counts a death each.
-- ARGV[2..]: owner, by, worker, now, died, then optional ids. Returns the rerouted ids.
local owner, by, worker, now, died = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] == '1'
local ids = {}
if #ARGV > 6 then
  for i = 7, #ARGV do ids[#ids + 1] = ARGV[i] end
else  -- all of it: the owner is leaving, so first nothing more is handed to it
  withdraw(owner)
  ids = redis.call('SMEMBERS', P .. 'owned:' .. owner)
end
local out = {}
for _, id in ipairs(ids) do
  local kind = redis.call('TYPE', ikey(id))['ok']
  local cur_owner = kind == 'hash' and redis.call('HGET', ikey(id), 'owner') or nil
  if (cur_owner == owner or kind ~= 'hash')
      and reroute(id, owner, by, worker, now, by ~= owner, died) then
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
