-- reroute: take back what `owner` holds (all of it, or the ids given) and
-- queue it again; `by` is the owner itself (shutdown) or a recovering runner.
-- ARGV: prefix, owner, by, worker, now, then optional ids. Returns the rerouted ids.
local owner, by, worker, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ids = {}
if #ARGV > 5 then
  for i = 6, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('SMEMBERS', P .. 'owned:' .. owner)
  return_inflight(owner)
end
local out = {}
for _, id in ipairs(ids) do
  local cur_owner = redis.call('HGET', ikey(id), 'owner')
  if cur_owner == owner and reroute(id, by, worker, now, by ~= owner) then
    out[#out + 1] = id
  else
    redis.call('SREM', P .. 'owned:' .. owner, id)
  end
end
flush_counts()
return out
