-- Status changes: the transition rule (check), the trigger log's entry for a
-- watched move (occurred), moving a record through statuses with its history
-- (move), knowing a write sent again was applied
-- already (applied_last), taking an owned invocation back to its queue
-- (reroute), and the fence that keeps a runner declared gone from taking work
-- again (fence, refuse_fenced).

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

-- Whether each app (by prefix) has a watch list, as far as this library knows:
-- loaded as a function library, it keeps this between calls, so an app
-- without triggers pays one EXISTS per library load, not per call. Only
-- trigger_watch writes the list, and it sets the app's entry: a list that
-- expired since only costs a look per move. (As standalone scripts, where
-- nothing is kept, each call looks once.)
local WATCHED = {}

-- Append to the trigger log (occ) that id, of task (read when nil), entered
-- `status`, when a trigger watches that move.
local OCC_MAX = __OCC_MAX__
local function occurred(id, task, status)
  if watching == nil then
    watching = WATCHED[P]
    if watching == nil then
      watching = redis.call('EXISTS', P .. 'watch') == 1
      WATCHED[P] = watching
    end
  end
  if not watching then return end
  task = task or redis.call('HGET', ikey(id), 'task')
  if task and redis.call('HEXISTS', P .. 'watch', task .. '\t' .. status) == 1 then
    redis.call('XADD', P .. 'occ', 'MAXLEN', '~', OCC_MAX, '*', 'kind', 'status', 'id', id,
      'task', task, 'st', status, 'at', string.format('%.6f', clock()))
  end
end

-- Move id, whose record `rec` read() returned, from its status to `moves`: one
-- status, or a list of statuses taken in turn (one HSET: status, owner, history
-- entries, and the fields f1, f2 and f3 set to v1, v2 and v3 when given). Leaving the
-- owned statuses releases its running key (rec.rck, when it was read and is
-- set). On the hot path: it builds no table but the HSET's arguments.
local function move(id, rec, moves, runner, worker, owner, f1, v1, f2, v2, f3, v3)
  local args = {ikey(id)}
  local hn = tonumber(rec.hn)
  local last = moves
  if type(moves) == 'table' then
    for _, new in ipairs(moves) do
      args[#args + 1] = 'h' .. hn
      args[#args + 1] = entry(new, runner, worker)
      hn = hn + 1
    end
    last = moves[#moves]
  else
    args[2], args[3] = 'h' .. hn, entry(moves, runner, worker)
    hn = hn + 1
  end
  local n = #args
  args[n + 1], args[n + 2], args[n + 3], args[n + 4] = 'status', last, 'hn', hn
  args[n + 5], args[n + 6] = 'owner', owner or ''
  n = n + 6
  if f1 then args[n + 1], args[n + 2] = f1, v1; n = n + 2 end
  if f2 then args[n + 1], args[n + 2] = f2, v2; n = n + 2 end
  if f3 then args[n + 1], args[n + 2] = f3, v3 end
  local cur = rec.status
  redis.call('HSET', unpack(args))
  count(cur, -1)
  count(last, 1)
  if rec.rck and OWNED[cur] and not OWNED[last] then release(id, rec.rck) end
  if watching == false then return end  -- known this call: the app watches nothing
  if type(moves) == 'table' then
    for _, new in ipairs(moves) do occurred(id, rec.task, new) end
  else
    occurred(id, rec.task, moves)
  end
end

-- Whether the last history entry of id (hn entries long) is `status` written by
-- runner's worker: how a write sent again after its reply was lost knows it was
-- applied already.
local function applied_last(id, hn, status, runner, worker)
  local last = parse_entry(redis.call('HGET', ikey(id), 'h' .. (tonumber(hn) - 1)))
  return last ~= nil and last.status == status and last.runner == runner
    and last.worker == worker
end

-- Take id back from its owner and queue it again (shutdown, dead runner).
-- Skips ids that are no longer held (already final or rerouted). `died`: the
-- worker holding it died, so it runs alone from then on (the record's alone);
-- the death counts toward max_reroutes (deaths) unless `shared` (it died with
-- others, see reroute.lua); a clean hand-back (shutdown, reconcile) does
-- neither. `from` is the runner whose owned set listed it.
local function reroute(id, from, by, worker, recovery, died, shared)
  local rec, why = read(id, READS.reroute)
  if not rec then
    if why then fail_corrupt(id, why, 'RUNNING', from, by) end
    redis.call('SREM', P .. 'owned:' .. from, id)
    return false
  end
  if not OWNED[rec.status] then return false end
  if rec.owner ~= by and not recovery then return false end
  if rec.owner and rec.owner ~= '' then redis.call('SREM', P .. 'owned:' .. rec.owner, id) end
  local counts = died and not shared
  move(id, rec, 'REROUTED', by, worker, nil, 'reroutes', tonumber(rec.reroutes or 0) + 1,
    counts and 'deaths' or nil, counts and tonumber(rec.deaths or 0) + 1 or nil,
    died and 'alone' or nil, died and '1' or nil)
  queue_ids(rec.queue or DEFAULT_QUEUE, rec.prio or DEFAULT_PRIORITY, {id})
  return true
end

-- The fence. A parent that declares one of its workers gone (a Ray actor that
-- stopped answering) reroutes what the worker owned and starts a replacement;
-- but a worker cut off from its parent and not from Redis (a split brain) lives
-- on. In the same step as that reroute, fence() marks the worker's runner id
-- for the record lifetime, and from then on its claims, its direct runs (a move
-- to PENDING) and its heartbeats are refused (refuse_fenced): it never takes
-- work again, and is told to stop. It owns nothing after that step and cannot
-- own anything again, so check() drops its late final writes as any
-- non-owner's: finishes need no fence check of their own.
local function fence(runner, by)
  redis.call('SET', P .. 'fenced:' .. runner, by, 'EX', TTL)
end

-- Raise, before anything is written, if runner was fenced: it may not `what`.
local function refuse_fenced(runner, what)
  local by = redis.call('GET', P .. 'fenced:' .. runner)
  if by then
    error({err = 'PYNENC_FENCED runner ' .. runner .. ' was declared gone by runner ' .. by ..
      ', which rerouted its work and replaces it; it may not ' .. what ..
      '. It should stop: a replacement runs in its place'})
  end
end
