-- The hand-off. A worker that runs one invocation at a time and serves one queue
-- (PersistentProcessRunner's) registers when a claim finds that queue empty
-- (claim_step, through register_idle), and then waits on its inbox as well as
-- on the bell. A submit into that queue claims the new invocation for the
-- registered worker in the same step, RUNNING and owned (enqueue.lua, through
-- idle_worker), and pushes it to the inbox: the worker runs it without a claim
-- round trip. A registration holds IDLE_SEC of server time (more than a worker
-- blocks between claims, each of which renews it), so one left by a worker that
-- died idle lapses on its own; a runner that leaves (reroute of all it owns,
-- forget, recovery) withdraws at once.
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

-- What was handed to runner and is still its to run, up to n: the claim's flat
-- list (see claim_step), from its inbox. Called by a worker that woke for
-- another reason (a bell) or is about to claim again, so nothing handed to it
-- waits there meanwhile.
local function handed(runner, n)
  local out, inbox = {}, P .. 'inbox:' .. runner
  while #out < 5 * n do
    local item = redis.call('LPOP', inbox)
    if not item then break end
    local id = string.match(item, '^([^\n]+)\n')
    local rec, why
    if id then rec, why = read(id, READS.handed) end
    if rec and rec.status == 'RUNNING' and rec.owner == runner then
      for _, x in ipairs({id, rec.task, rec.args, rec.retries or 0, rec.deaths or 0}) do
        out[#out + 1] = x
      end
    elseif why then
      fail_corrupt(id, why, 'RUNNING', runner, runner)
    end
  end
  return out
end

-- Take id out of runner's inbox if it was handed there and not taken yet: it
-- was given back or cancelled, so the runner must not start it later.
local function unhand(runner, id)
  local inbox = P .. 'inbox:' .. runner
  if redis.call('EXISTS', inbox) == 0 then return end
  local rec = fields_of(id, {'task', 'args'})
  if rec and rec.task and rec.args then
    redis.call('LREM', inbox, 0, id .. '\n' .. rec.task .. '\n' .. rec.args)
  end
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
