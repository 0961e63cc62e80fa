-- finish_step(runner, items): for each item (id, status, payload, worker: a
-- record of finish's tail, see arguments.py's Finish), store the result
-- (SUCCESS) or error (FAILED) with the final status at once, release it, and
-- start its TTL. The first final write wins: a late one from a former owner is
-- dropped. Every item is read and checked before anything is written (a
-- refused move raises with nothing half-done); a corrupt record is failed in
-- place and reported as dropped. Used by finish.lua and finish_claim.lua, which
-- commit() after it: one PUBLISH then wakes the waiters of the whole batch and
-- carries the small payloads.
-- Returns 'OK' or 'DROP' per item, in order.
local function finish_step(runner, items)
  local out, done, recs, bad = {}, {}, {}, {}
  for i, item in ipairs(items) do
    local rec, why = read(item.id, READS.plain)
    if rec and check(item.id, rec.status, item.status, rec.owner, runner, false) == 'APPLY' then
      recs[i] = rec  -- applied below
      out[#out + 1] = 'OK'
    else
      if why then bad[#bad + 1] = {id = item.id, why = why} end
      out[#out + 1] = 'DROP'
    end
  end
  for i, item in ipairs(items) do
    if recs[i] then
      move(item.id, recs[i], item.status, runner, item.worker, nil,
        item.status == 'SUCCESS' and 'result' or 'error', item.payload)
      redis.call('EXPIRE', ikey(item.id), TTL)
      done[#done + 1] = item.id
      announce(item.id, item.status, item.payload)
    end
  end
  for _, b in ipairs(bad) do fail_corrupt(b.id, b.why, 'RUNNING', runner, runner) end
  if #done > 0 then push_all('SREM', P .. 'owned:' .. runner, done) end
  return out
end
