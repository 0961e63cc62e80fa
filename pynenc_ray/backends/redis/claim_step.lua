-- claim_step(c): take up to c.n invocations as PENDING owned by c.runner, in
-- one step, so a crash never leaves an id popped but unowned. `c` holds the
-- claim's arguments (arguments.py's CLAIM, and the served queues): claim.lua
-- and finish_claim.lua pass their A. With c.start (a runner that starts them
-- at once) they go on to RUNNING in the same step. With c.promote, due delayed
-- calls and retries of the served queues are queued first (the caller asks for
-- it a few times a second, not on every claim). Ids come from the served
-- queues' highest non-empty priority level, oldest first; at one level the
-- queues are taken in the order given (the caller rotates it). Ids no longer
-- claimable (final, expired) are skipped; a corrupt record is failed in place
-- (fail_corrupt) and the claim goes on. Each id is read and checked before
-- anything about it is written. A claim that filled up may leave work behind:
-- it rings the served queues' bells so that another idle runner looks. An id
-- whose running key (rck) another owned invocation holds is set aside instead
-- (may_run in concurrency.lua, whose release() queues it again once the key is
-- free). With c.handoff (a worker that runs one at a time, start, one queue)
-- what its inbox holds comes first, and a claim that finds nothing registers
-- it for a hand-off (see handoff.lua). The callers commit() after it.
-- Returns a flat list: id, task, args, retries, deaths, alone (1 or 0) per
-- claimed invocation (CLAIM_FIELDS, from arguments.py).

-- Queue the due ids (by the server's clock, which set their due times) of each
-- of `queues`' delayed sets, each at its own level.
local function promote(queues)
  for _, q in ipairs(queues) do
    local key = P .. 'delayed:' .. q
    local due = redis.call('ZRANGEBYSCORE', key, '-inf', clock(), 'LIMIT', 0, 1000)
    if #due > 0 then
      redis.call('ZREM', key, unpack(due))
      for _, id in ipairs(due) do
        local p = redis.call('HGET', ikey(id), 'prio')
        queue_ids(q, (p and is_priority(p)) and p or DEFAULT_PRIORITY, {id})
      end
    end
  end
end

-- a started claim's moves, built once where the library loads
local CLAIMED_STARTED = {'PENDING', 'RUNNING'}

local function claim_step(c)
  local runner, queues, n = c.runner, c.queues, c.n
  local moves = c.start and CLAIMED_STARTED or 'PENDING'
  local out = {}
  if c.handoff then
    redis.call('ZREM', P .. 'idle:' .. queues[1], runner)
    out = handed(runner, n)
    n = n - #out / CLAIM_FIELDS
  end
  if c.promote then promote(queues) end
  -- LMPOP's arguments: every served list, highest level first
  local pop = {0}
  for p = MAX_PRIORITY, MIN_PRIORITY, -1 do
    for _, q in ipairs(queues) do pop[#pop + 1] = qkey(q, p) end
  end
  pop[1] = #pop - 1
  pop[#pop + 1] = 'LEFT'
  pop[#pop + 1] = 'COUNT'
  pop[#pop + 1] = 0
  local owned = {}
  while #owned < n do
    pop[#pop] = n - #owned
    local got = redis.call('LMPOP', unpack(pop))
    if not got then break end  -- every served level is empty
    for _, id in ipairs(got[2]) do
      local rec, why = read(id, READS.claim)
      if rec and CLAIMABLE[rec.status] and rec.rck and not may_run(id, rec.rck) then
        -- set aside until the invocation holding its key is done
      elseif rec and CLAIMABLE[rec.status] then
        move(id, rec, moves, runner, c.worker, runner)
        owned[#owned + 1] = id
        append_claimed(out, id, rec)
      elseif why then
        fail_corrupt(id, why, 'REGISTERED', nil, runner)
      end
    end
  end
  if #owned > 0 then push_all('SADD', P .. 'owned:' .. runner, owned) end
  if n > 0 and #owned >= n then
    for _, q in ipairs(queues) do ring(q) end
  end
  if c.handoff and #out == 0 then register_idle(queues[1], runner, c.worker) end
  return out
end
