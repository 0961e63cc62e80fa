-- The hand-off. A worker that runs one invocation at a time and serves one queue
-- (PersistentProcessRunner's) registers when a claim finds that queue empty
-- (claim_step, through register_idle), and then waits on its inbox as well as
-- on the bell. A submit into that queue claims the new invocation for the
-- registered worker in the same step, RUNNING and owned (enqueue.lua, through
-- idle_worker), and pushes its id to the inbox: the worker wakes on it and takes
-- it with one read of its record (take_handed), without a claim step. The
-- inbox is not trusted: a worker runs only what its record says was handed to
-- it, RUNNING and owned by it, never an id pushed there by anything else. A
-- registration holds IDLE_SEC of server time (more than a worker blocks
-- between claims, each of which renews it), so one left by a worker that died
-- idle lapses on its own; a runner that leaves (reroute of all it owns, forget,
-- recovery) withdraws at once.
local IDLE_SEC = 5

-- Register runner's `worker` as waiting for a hand-off from `queue`.
local function register_idle(queue, runner, worker)
  redis.call('ZADD', P .. 'idle:' .. queue, clock() + IDLE_SEC, runner)
  redis.call('HSET', P .. 'idlers', runner, queue .. '\t' .. worker)
end

-- The registered worker of `queue` to hand an invocation to, taken off the
-- registry: runner and worker label, or nil. Lapsed or malformed
-- registrations met on the way are dropped.
local function idle_worker(queue)
  local key = P .. 'idle:' .. queue
  while true do
    local top = redis.call('ZPOPMAX', key)
    if #top == 0 then return nil end
    local reg = redis.call('HGET', P .. 'idlers', top[1])
    local q, worker = string.match(reg or '', '^([^\t]*)\t(.+)$')
    if q == queue and tonumber(top[2]) >= clock() then return top[1], worker end
  end
end

-- Take `item`, popped from runner's inbox, if its record backs it: appended to
-- `out` as a claim's reply holds it (append_claimed) when the record is RUNNING
-- and owned by runner; skipped otherwise (given back or cancelled since, or
-- never handed at all); failed in place when corrupt. An
-- item is an id (one written by an earlier version, "<id>\n<task>\n<args>",
-- counts by its id alone).
local function take_handed(runner, item, out)
  local id = string.match(item, '^[^\n]+')
  if not id then return end
  local rec, why = read(id, READS.handed)
  if rec and rec.status == 'RUNNING' and rec.owner == runner then
    append_claimed(out, id, rec)
  elseif why then
    fail_corrupt(id, why, 'RUNNING', runner, runner)
  end
end

-- What was handed to runner and is still its to run, up to n: the claim's flat
-- list (see claim_step), from its inbox. Called by a worker that woke for
-- another reason (a bell) or is about to claim again, so nothing handed to it
-- waits there meanwhile.
local function handed(runner, n)
  local out, inbox = {}, P .. 'inbox:' .. runner
  while #out < 5 * n do
    local item = redis.call('LPOP', inbox)
    if not item then break end
    take_handed(runner, item, out)
  end
  return out
end

-- Take id out of runner's inbox if it was handed there and not taken yet: it
-- was given back or cancelled, so the runner must not start it later.
local function unhand(runner, id)
  redis.call('LREM', P .. 'inbox:' .. runner, 0, id)
end

-- A runner leaves: drop its registration and whatever its inbox still lists
-- (those are in its owned set, which the caller reroutes or leaves to recovery).
local function withdraw(runner)
  local reg = redis.call('HGET', P .. 'idlers', runner)
  if not reg then return end
  local queue = string.match(reg, '^([^\t]*)\t')
  if queue then redis.call('ZREM', P .. 'idle:' .. queue, runner) end
  redis.call('HDEL', P .. 'idlers', runner)
  redis.call('DEL', P .. 'inbox:' .. runner)
end
