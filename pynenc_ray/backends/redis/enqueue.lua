-- enqueue: store each call as REGISTERED and (if push = 1) append them to their
-- queue's level, or (with a not_before time) schedule them in the queue's
-- delayed set, from which a claim queues them once due, as it does retries.
-- A call due now and without a running key, pushed while a worker of its queue
-- waits for a hand-off (see handoff.lua), is claimed for that worker instead:
-- stored RUNNING and owned by it (REGISTERED, PENDING, RUNNING in its history)
-- and pushed to its inbox.
-- One HSET per call; the queue and the index get one command per batch. An id
-- already stored is left alone: a retried enqueue never resets a record. The
-- index is scored by the server's clock, as the history is.
-- A call with a registration key whose invocation is not final yet is not
-- stored: the id of that one is returned in its place.
-- ARGV[2..]: runner, worker, push, queue, prio, not_before ('' for now), then
-- (id, task, args, parent, running key, registration key) per call: every call
-- of one batch waits in the same queue at the same priority from the same time.
-- Returns the id each call is known by, in order.
local runner, worker, push, queue, prio = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local not_before = tonumber(ARGV[7])
local ids, index = {}, {}
local h0 = entry('REGISTERED', runner, worker)
local now = clock()
local where = {}  -- queue and prio are stored only when they are not the defaults
if queue ~= DEFAULT_QUEUE then where[#where + 1] = 'queue'; where[#where + 1] = queue end
if prio ~= tostring(DEFAULT_PRIORITY) then where[#where + 1] = 'prio'; where[#where + 1] = prio end
local resolved = {}
local handing = push == '1' and not not_before  -- until no worker waits
local idle_key = P .. 'idle:' .. queue

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

for i = 8, #ARGV, 6 do
  local id, rck, regk = ARGV[i], ARGV[i + 4], ARGV[i + 5]
  local known
  if regk ~= '' then
    local ex = redis.call('GET', P .. 'reg:' .. regk)
    if ex and ex ~= id then  -- a record read here is untrusted: pcall, then check
      local st = redis.pcall('HGET', ikey(ex), 'status')
      if type(st) == 'string' and ALLOWED[st] and not FINAL[st] then known = ex end
    end
  end
  if known then
    resolved[#resolved + 1] = known
  else
    resolved[#resolved + 1] = id
    local look = handing and rck == ''
    local fresh, waits = is_new(id, look)
    if look and not waits then handing = false end  -- nobody waits: no more looks
    if fresh then
      local fields = {ikey(id), 'task', ARGV[i + 1], 'args', ARGV[i + 2],
        'status', 'REGISTERED', 'h0', h0, 'hn', 1}
      if ARGV[i + 3] ~= '' then  -- retries, reroutes and deaths read as 0 until set
        fields[#fields + 1] = 'parent'
        fields[#fields + 1] = ARGV[i + 3]
      end
      if rck ~= '' then
        fields[#fields + 1] = 'rck'
        fields[#fields + 1] = rck
      end
      for _, x in ipairs(where) do fields[#fields + 1] = x end
      local to, label
      if waits then
        to, label = idle_worker(queue, now)
        handing = to ~= nil
      end
      if to then  -- claimed for a waiting worker: the history claim_step would write
        for _, x in ipairs({'h1', entry('PENDING', to, label), 'h2', entry('RUNNING', to, label),
            'hn', 3, 'status', 'RUNNING', 'owner', to}) do
          fields[#fields + 1] = x
        end
        redis.call('HSET', unpack(fields))
        redis.call('SADD', P .. 'owned:' .. to, id)
        redis.call('RPUSH', P .. 'inbox:' .. to, id .. '\n' .. ARGV[i + 1] .. '\n' .. ARGV[i + 2])
        count('RUNNING', 1)
      else
        redis.call('HSET', unpack(fields))
        ids[#ids + 1] = id
      end
      if regk ~= '' then redis.call('SET', P .. 'reg:' .. regk, id, 'EX', TTL) end
      index[#index + 1] = now
      index[#index + 1] = id
    end
  end
end
if #index == 0 then return resolved end
if #ids > 0 and push == '1' and not_before then
  local due = {}
  for _, id in ipairs(ids) do
    due[#due + 1] = not_before
    due[#due + 1] = id
  end
  push_all('ZADD', P .. 'delayed:' .. queue, due)
  redis.call('SADD', P .. 'queues', queue)
elseif #ids > 0 and push == '1' then
  queue_ids(queue, prio, ids)
end
push_all('ZADD', P .. 'index', index)
count('REGISTERED', #ids)
commit()
return resolved
