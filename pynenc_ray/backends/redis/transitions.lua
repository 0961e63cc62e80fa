-- Status changes: the transition rule (check), moving a record through
-- statuses with its history (move), knowing a write sent again was applied
-- already (applied_last), and taking an owned invocation back to its queue
-- (reroute).

-- The rule of status.check_transition. Returns 'APPLY' or 'DROP', or raises
-- an error reply ("PYNENC_TRANSITION ..." / "PYNENC_OWNERSHIP ...") before any write.
local function check(id, cur, new, owner, actor, recovery)
  if new == 'CANCELLED' and not FINAL[cur] then return 'APPLY' end  -- anyone may cancel
  local owned_by_actor = OWNED[cur] and owner == actor
  if FINAL[new] and not owned_by_actor then return 'DROP' end
  if not ALLOWED[cur][new] then
    error({err = 'PYNENC_TRANSITION invocation ' .. id .. ': ' .. cur .. ' -> ' .. new ..
      ' is not an allowed transition; requested by runner ' .. actor})
  end
  if OWNED[cur] and not owned_by_actor then
    if recovery and new == 'REROUTED' then return 'APPLY' end
    error({err = 'PYNENC_OWNERSHIP invocation ' .. id .. ' is ' .. cur .. ' and owned by ' ..
      tostring(owner) .. '; runner ' .. actor .. ' may not move it to ' .. new})
  end
  return 'APPLY'
end

-- Move id from `cur` to each status of `moves` in turn (one HSET: status, owner,
-- history entries and any `extra` field/value pairs). `hn` is its history length.
-- Leaving the owned statuses releases its running key `rck`, if it has one.
local function move(id, hn, cur, moves, runner, worker, now, owner, extra, rck)
  local args = {ikey(id)}
  hn = tonumber(hn)
  for _, new in ipairs(moves) do
    args[#args + 1] = 'h' .. hn
    args[#args + 1] = entry(new, runner, worker, now)
    hn = hn + 1
  end
  local last = moves[#moves]
  for _, v in ipairs({'status', last, 'hn', hn, 'owner', owner or ''}) do args[#args + 1] = v end
  for _, v in ipairs(extra or {}) do args[#args + 1] = v end
  redis.call('HSET', unpack(args))
  count(cur, -1)
  count(last, 1)
  if rck and OWNED[cur] and not OWNED[last] then release(id, rck, now) end
end

-- Whether the last history entry of id is `status` written by runner's worker:
-- how a write sent again after its reply was lost knows it was applied already.
local function applied_last(id, hn, status, runner, worker)
  local raw = redis.call('HGET', ikey(id), 'h' .. (tonumber(hn) - 1))
  local ok, last = pcall(cjson.decode, raw or '')  -- untrusted: may not parse
  return ok and type(last) == 'table' and last[1] == status and last[2] == runner
    and last[3] == worker
end

-- Take id back from its owner and queue it again (shutdown, dead runner).
-- Skips ids that are no longer held (already final or rerouted). `died`: the
-- worker holding it died, which counts toward max_reroutes; a clean hand-back
-- (shutdown, reconcile) does not.
-- `from` is the runner whose owned set listed it.
local function reroute(id, from, by, worker, now, recovery, died)
  local v, why = read(id, {'reroutes', 'deaths', 'queue', 'prio', 'rck'})
  if not v then
    if why then fail_corrupt(id, why, 'RUNNING', from, by, now) end
    redis.call('SREM', P .. 'owned:' .. from, id)
    return false
  end
  local cur, owner, hn, reroutes, deaths = v[1], v[2], v[3], v[4], v[5]
  if not OWNED[cur] then return false end
  if owner ~= by and not recovery then return false end
  if owner and owner ~= '' then redis.call('SREM', P .. 'owned:' .. owner, id) end
  local extra = {'reroutes', tonumber(reroutes or 0) + 1}
  if died then
    extra[3] = 'deaths'
    extra[4] = tonumber(deaths or 0) + 1
  end
  move(id, hn, cur, {'REROUTED'}, by, worker, now, nil, extra, v[8])
  queue_ids(v[6] or DEFAULT_QUEUE, v[7] or DEFAULT_PRIORITY, {id})
  return true
end

