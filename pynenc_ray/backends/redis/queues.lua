-- Queues: the rules for queue names and priority levels (generated from
-- pynenc_ray/queues.py, the one place they are written), the keys of a
-- queue's levels, and pushing ids onto them with the bell that wakes idle
-- runners.

local DEFAULT_QUEUE = __DEFAULT_QUEUE__
local DEFAULT_PRIORITY = __DEFAULT_PRIORITY__
local MIN_PRIORITY, MAX_PRIORITY = __MIN_PRIORITY__, __MAX_PRIORITY__
local QUEUE_NAME_MAX = __QUEUE_NAME_MAX__
local QUEUE_NAME = __QUEUE_NAME_PATTERN__
local PRIORITY = {}  -- level -> true, for each valid priority
for p = MIN_PRIORITY, MAX_PRIORITY do PRIORITY[p] = true end

-- Whether x (untrusted: read from a record) is a valid queue name, or priority.
local function is_queue(x) return #x <= QUEUE_NAME_MAX and string.find(x, QUEUE_NAME) ~= nil end
local function is_priority(x) return PRIORITY[tonumber(x) or false] == true end

local function qkey(queue, prio) return P .. 'queue:' .. queue .. ':' .. prio end

-- Wake one idle runner of `queue`: it pops the token, then claims. A token is
-- left whenever a queue may hold work that no runner is about to claim (a push
-- into an empty level, a claim that filled up and left work behind), so idle
-- runners need not poll. Spare tokens only cost a runner an empty claim. One
-- token is enough: a ring usually finds one there already (no runner was idle),
-- and then it costs one LLEN and writes nothing.
local function ring(queue)
  local bell = P .. 'bell:' .. queue
  if redis.call('LLEN', bell) == 0 then redis.call('RPUSH', bell, '1') end
end

-- Append ids to the back of `queue` at `prio`. A level that was empty gets the
-- queue listed (for status) and its bell rung.
local function queue_ids(queue, prio, ids)
  local key = qkey(queue, tonumber(prio))
  local was_empty = false
  for i = 1, #ids, 1000 do
    local last = math.min(i + 999, #ids)
    if redis.call('RPUSH', key, unpack(ids, i, last)) == last - i + 1 then was_empty = true end
  end
  if was_empty then
    redis.call('SADD', P .. 'queues', queue)
    ring(queue)
  end
end

-- Put id back at the front of its queue's level (it waited its turn already).
local function queue_front(queue, prio, id)
  if redis.call('LPUSH', qkey(queue, prio), id) == 1 then
    redis.call('SADD', P .. 'queues', queue)
    ring(queue)
  end
end
