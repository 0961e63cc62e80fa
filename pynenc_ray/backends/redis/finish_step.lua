-- finish_step(runner, now, a, first, last): for each invocation, given as
-- (id, status, payload, worker) at a[i] .. a[i + 3] for i = first, first + 4,
-- .. last, store the result (SUCCESS) or error (FAILED) with the final status
-- at once, release it, and start its TTL. The first final write wins: a late
-- one from a former owner is dropped. Every item is read and checked before
-- anything is written (a refused move raises with nothing half-done); a
-- corrupt record is failed in place and reported as dropped. Used by
-- finish.lua and finish_claim.lua, which commit() after it: one PUBLISH then
-- wakes the waiters of the whole batch and carries the small payloads.
-- Returns 'OK' or 'DROP' per invocation, in order.
local function finish_step(runner, now, a, first, last)
  local out, done, applied, bad = {}, {}, {}, {}
  for i = first, last, 4 do
    local id, new = a[i], a[i + 1]
    local rec, why = read(id, {'rck'})
    if rec and check(id, rec.status, new, rec.owner, runner, false) == 'APPLY' then
      applied[#applied + 1] = {at = i, rec = rec}
      out[#out + 1] = 'OK'
    else
      if why then bad[#bad + 1] = {id = id, why = why} end
      out[#out + 1] = 'DROP'
    end
  end
  for _, x in ipairs(applied) do
    local i = x.at
    local id, new, payload, worker = a[i], a[i + 1], a[i + 2], a[i + 3]
    move(id, x.rec, {new}, runner, worker, now, nil,
      {new == 'SUCCESS' and 'result' or 'error', payload})
    redis.call('EXPIRE', ikey(id), TTL)
    done[#done + 1] = id
    announce(id, new, payload)
  end
  for _, b in ipairs(bad) do fail_corrupt(b.id, b.why, 'RUNNING', runner, runner, now) end
  if #done > 0 then push_all('SREM', P .. 'owned:' .. runner, done) end
  return out
end
