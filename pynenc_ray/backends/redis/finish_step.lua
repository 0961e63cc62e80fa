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
  local out, done, rows, bad = {}, {}, {}, {}
  for i = first, last, 4 do
    local id, new = a[i], a[i + 1]
    local v, why = read(id, {'rck'})
    if v and check(id, v[1], new, v[2], runner, false) == 'APPLY' then
      rows[#rows + 1] = {i, v[1], v[3], v[4]}
      out[#out + 1] = 'OK'
    else
      if why then bad[#bad + 1] = {id, why} end
      out[#out + 1] = 'DROP'
    end
  end
  for _, row in ipairs(rows) do
    local i, cur, hn, rck = row[1], row[2], row[3], row[4]
    local id, new, payload, worker = a[i], a[i + 1], a[i + 2], a[i + 3]
    move(id, hn, cur, {new}, runner, worker, now, nil,
      {new == 'SUCCESS' and 'result' or 'error', payload}, rck)
    redis.call('EXPIRE', ikey(id), TTL)
    done[#done + 1] = id
    announce(id, new, payload)
  end
  for _, b in ipairs(bad) do fail_corrupt(b[1], b[2], 'RUNNING', runner, runner, now) end
  if #done > 0 then push_all('SREM', P .. 'owned:' .. runner, done) end
  return out
end
