-- finish: for each invocation, store the result (SUCCESS) or error (FAILED)
-- with the final status at once, release it, and start its TTL. The first final
-- write wins: a late one from a former owner is dropped. Every item is checked
-- before anything is written (a refused move raises with nothing half-done);
-- one PUBLISH wakes the waiters of the whole batch.
-- ARGV: prefix, runner, now, ttl_sec, then (id, status, payload, worker) per invocation.
-- Returns 'OK' or 'DROP' per invocation, in order.
local runner, now, ttl = ARGV[2], ARGV[3], ARGV[4]
local out, done, rows = {}, {}, {}
for i = 5, #ARGV, 4 do
  local id, new = ARGV[i], ARGV[i + 1]
  local cur, owner, hn = unpack(redis.call('HMGET', ikey(id), 'status', 'owner', 'hn'))
  if cur and check(id, cur, new, owner, runner, false) == 'APPLY' then
    rows[#rows + 1] = {i, cur, hn}
    out[#out + 1] = 'OK'
  else
    out[#out + 1] = 'DROP'
  end
end
for _, row in ipairs(rows) do
  local i, cur, hn = row[1], row[2], row[3]
  local id, new, payload, worker = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  move(id, hn, cur, {new}, runner, worker, now, nil,
    {new == 'SUCCESS' and 'result' or 'error', payload})
  redis.call('EXPIRE', ikey(id), ttl)
  done[#done + 1] = id
end
if #done > 0 then
  push_all('SREM', P .. 'owned:' .. runner, done)
  redis.call('PUBLISH', P .. 'final', table.concat(done, ','))
end
flush_counts()
return out
