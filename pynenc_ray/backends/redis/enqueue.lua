-- enqueue: store each call as REGISTERED and (if push) append them to their
-- queue's level, or (with a delay) schedule them in the queue's delayed set,
-- due at server time + delay, from which a claim queues them once due, as it
-- does retries. A call due now and without a running key, pushed while a
-- worker of its queue waits for a hand-off (see handoff.lua), is claimed for
-- that worker instead: stored RUNNING and owned by it (REGISTERED, PENDING,
-- RUNNING in its history) and pushed to its inbox.
-- One HSET per call; the queue and the registered log get one command per
-- batch. An id already stored is left alone: a retried enqueue never resets a
-- record.
-- A call with a registration key whose invocation is not final yet is not
-- stored: the id of that one is returned in its place.
-- Arguments: runner and worker (who submits), push, queue, prio, delay (seconds
-- from now; nil for now), then the calls (invocation_id, task_id, args,
-- parent_id, running_key, registration_key: '' for none): every call of one
-- batch waits in the same queue at the same priority from the same time.
-- Returns the id each call is known by, in order.
local ids, stored = {}, {}
local h0 = entry('REGISTERED', A.runner, A.worker)
local due = A.delay and clock() + A.delay
local where = {}  -- queue and prio are stored only when they are not the defaults
if A.queue ~= DEFAULT_QUEUE then where[#where + 1] = 'queue'; where[#where + 1] = A.queue end
if A.prio ~= DEFAULT_PRIORITY then where[#where + 1] = 'prio'; where[#where + 1] = A.prio end
local resolved = {}
local handing = A.push and not due  -- until no worker waits
local idle_key = P .. 'idle:' .. A.queue

-- Whether id has no record yet (a retried enqueue finds its own), and, when
-- `look`, whether a worker of the queue waits for a hand-off. One EXISTS of
-- both keys answers both in the common cases (0: new, nobody waits; 2: stored
-- already), so a submit where no worker waits costs no extra command.
local function is_new(id, look)
  if not look then return redis.call('EXISTS', ikey(id)) == 0, false end
  local n = redis.call('EXISTS', ikey(id), idle_key)
  if n ~= 1 then return n == 0, false end
  local waits = redis.call('EXISTS', idle_key) == 1
  return waits, waits
end

for _, call in ipairs(A.calls) do
  local id = call.invocation_id
  local known
  if call.registration_key ~= '' then
    local ex = redis.call('GET', P .. 'reg:' .. call.registration_key)
    if ex and ex ~= id then  -- a record read here is untrusted: pcall, then check
      local st = redis.pcall('HGET', ikey(ex), 'status')
      if type(st) == 'string' and ALLOWED[st] and not FINAL[st] then known = ex end
    end
  end
  if known then
    resolved[#resolved + 1] = known
  else
    resolved[#resolved + 1] = id
    local look = handing and call.running_key == ''
    local fresh, waits = is_new(id, look)
    if look and not waits then handing = false end  -- nobody waits: no more looks
    if fresh then
      local fields = {ikey(id), 'task', call.task_id, 'args', call.args,
        'status', 'REGISTERED', 'h0', h0, 'hn', 1}
      if call.parent_id ~= '' then  -- retries, reroutes and deaths read as 0 until set
        fields[#fields + 1] = 'parent'
        fields[#fields + 1] = call.parent_id
      end
      if call.running_key ~= '' then
        fields[#fields + 1] = 'rck'
        fields[#fields + 1] = call.running_key
      end
      for _, x in ipairs(where) do fields[#fields + 1] = x end
      local to, label
      if waits then
        to, label = idle_worker(A.queue)
        handing = to ~= nil
      end
      if to then  -- claimed for a waiting worker: the history claim_step would write
        for _, x in ipairs({'h1', entry('PENDING', to, label), 'h2', entry('RUNNING', to, label),
            'hn', 3, 'status', 'RUNNING', 'owner', to}) do
          fields[#fields + 1] = x
        end
        redis.call('HSET', unpack(fields))
        redis.call('SADD', P .. 'owned:' .. to, id)
        redis.call('RPUSH', P .. 'inbox:' .. to, id)
        count('RUNNING', 1)
        for _, st in ipairs({'REGISTERED', 'PENDING', 'RUNNING'}) do occurred(id, call.task_id, st) end
      else
        redis.call('HSET', unpack(fields))
        ids[#ids + 1] = id
        occurred(id, call.task_id, 'REGISTERED')
      end
      if call.registration_key ~= '' then redis.call('SET', P .. 'reg:' .. call.registration_key, id, 'EX', TTL) end
      stored[#stored + 1] = id
    end
  end
end
if #stored == 0 then return resolved end
if #ids > 0 and A.push and due then
  local scored = {}
  for _, id in ipairs(ids) do
    scored[#scored + 1] = due
    scored[#scored + 1] = id
  end
  push_all('ZADD', P .. 'delayed:' .. A.queue, scored)
  redis.call('SADD', P .. 'queues', A.queue)
elseif #ids > 0 and A.push then
  queue_ids(A.queue, A.prio, ids)
end
log_ids(P .. 'registered', stored)
count('REGISTERED', #ids)
commit()
return resolved
