-- Shared by every script: loaded once as the top of the function library (and
-- prepended to each script where functions are refused; see scripts.py).
--
-- Every script takes one key, KEYS[1]: the app's key prefix "pynenc:{<app_id>}:".
-- Every key below starts with it, so the hash tag {<app_id>} puts all of an
-- app's keys in one slot of a Redis Cluster (or one shard behind a key-aware
-- proxy), which KEYS[1] names. Keys of invocations a script only learns as it
-- runs (claim pops ids) cannot be listed up front; they share the slot. ARGV[1]
-- is the record lifetime result_ttl_sec; a script's own arguments start at ARGV[2].
-- Keys under the prefix:
--   inv:<id>         HASH  task, args, status, owner (meaningful while PENDING,
--                          RUNNING or PAUSED), queue and prio (written only when
--                          not "default" and 0), retries, reroutes (every hand-back),
--                          deaths (hand-backs because the worker died: what
--                          max_reroutes counts), parent, result, error, and the
--                          status history: hn entries h0 .. h<hn-1>, each JSON
--                          [status, runner_id, worker, server timestamp]. One HSET moves
--                          the status and appends its history entry.
--   corrupt:<id>     any   a record that could not be read, renamed aside for
--                          inspection (expires after result_ttl_sec)
--   corrupt          HASH  id -> why its record was set aside (what `status` lists)
--   waits:<id>       SET   invocations that <id> is waiting on (cycle detection)
--   queue:<q>:<p>    LIST  ids to run in queue <q> at priority <p> (0-9), oldest first
--   queues           SET   names of the queues that have held work (for status)
--   bell:<q>         LIST  a token when queue <q> may have work no runner is about
--                          to claim; idle runners block on their queues' bells
--   delayed:<q>      ZSET  ids of queue <q>'s retries waiting out their delay,
--                          scored by due time
--   lock:<key>       STRING  the invocation holding running-concurrency key <key>
--                          (the record field rck); meaningful while it is owned
--   held:<key>       LIST  ids a claim set aside while <key> was held, oldest first
--   heldkeys         SET   keys with ids set aside (recovery sweeps stale locks)
--   reg:<key>        STRING  the invocation registered under registration key <key>
--   lease:<name>     STRING  who holds a lease (recovery, cron), with a TTL
--   cron             HASH  task id -> the last due time its cron schedule fired
--   owned:<run>      SET   ids a runner owns (PENDING, RUNNING, PAUSED)
--   idle:<q>         ZSET  runners waiting for a hand-off from queue <q>, each scored
--                          by the server time until which its registration holds
--   idlers           HASH  runner -> "<queue>\t<worker>" of its hand-off registration
--   inbox:<run>      LIST  invocations handed to a runner, RUNNING and owned by it
--                          already: "<id>\n<task>\n<args>" each
--   runners          HASH  runner_id -> JSON info from its last heartbeat
--   beats            ZSET  runner_id scored by its last heartbeat (server time)
--   counts           HASH  status -> number of invocations in it (finals: totals);
--                          CORRUPT: records set aside
--   index            ZSET  invocation ids scored by registration time (for timelines),
--                          pruned past result_ttl_sec by recover
--   lease:recovery   STRING  which runner is rerouting dead runners' work, with a TTL
--   lastbeat         STRING  server time of the app's last heartbeat, from any runner
--   grace            STRING  until when recovery waits after an outage (see heartbeat)
--   final            channel: ids that became final, each announced as a line
--                          "<id>\n", or "<id> <status> <n>\n" followed by the n
--                          bytes of its payload when n <= INLINE_MAX (the
--                          listener then serves .result without a read)
--
-- Every script validates what it reads before it writes anything, so it either
-- completes or changes nothing: Redis does not roll back a script that fails
-- half-way. Data read here is untrusted: a record that does not validate is
-- failed in place (see fail_corrupt), never allowed to abort a step that also
-- carries other invocations.
--
-- The status tables below are generated from pynenc_ray/status.py: one
-- declaration for Python and Lua alike.
--
-- This chunk runs once when the library is loaded, so nothing here may depend
-- on a call: what does (the prefix, the TTL, the counts and finals gathered for
-- commit, the server clock) is set for each call by begin(), at the bottom.

local P, TTL
local ALLOWED = __ALLOWED__
local OWNED = __OWNED__
local FINAL = __FINAL__
local CLAIMABLE = __CLAIMABLE__
local INLINE_MAX = __INLINE_MAX__
local PRIO = {[0] = true, true, true, true, true, true, true, true, true, true}  -- 0 .. 9

local function ikey(id) return P .. 'inv:' .. id end
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

-- Push many values with as few commands as Lua's unpack allows.
local function push_all(cmd, key, values)
  for i = 1, #values, 1000 do
    redis.call(cmd, key, unpack(values, i, math.min(i + 999, #values)))
  end
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

-- Status count changes and newly final ids, applied once per script by commit().
-- A final announced with a small payload (announce) carries it in the PUBLISH.
local delta, finals, inline
local function count(status, n) delta[status] = (delta[status] or 0) + n end
local function announce(id, status, payload)
  finals[#finals + 1] = id
  if payload and #payload <= INLINE_MAX then inline[id] = {status, payload} end
end
local function commit()
  for status, n in pairs(delta) do
    if n ~= 0 then redis.call('HINCRBY', P .. 'counts', status, n) end
  end
  if #finals == 0 then return end
  local lines = {}
  for i, id in ipairs(finals) do
    local x = inline[id]
    lines[i] = x and (id .. ' ' .. x[1] .. ' ' .. #x[2] .. '\n' .. x[2]) or (id .. '\n')
  end
  redis.call('PUBLISH', P .. 'final', table.concat(lines))
end

-- History timestamps come from the server's clock, not the caller's `now`: two
-- hosts' clocks (or one process pre-empted between reading its clock and its
-- call) could otherwise write a record's history out of order. Redis runs
-- scripts one at a time, so server time orders every record's entries. Read
-- once per script, and only by a script that writes history.
local server_now
local function clock()
  if not server_now then
    local t = redis.call('TIME')
    server_now = tonumber(t[1]) + tonumber(t[2]) / 1e6
  end
  return server_now
end
local function entry(status, runner, worker, _)
  return cjson.encode({status, runner, worker, clock()})
end

-- Read fields of a record and check the ones every step relies on. Returns
-- the values of 'status', 'owner', 'hn', then `extra` in order; or nil and why
-- the record is corrupt; or nil, nil when there is no record at all.
local function read(id, extra)
  local key = ikey(id)
  local fields = {'status', 'owner', 'hn'}
  for _, f in ipairs(extra or {}) do fields[#fields + 1] = f end
  -- one HMGET on the hot path; its error reply (WRONGTYPE) is a corrupt record
  local v = redis.pcall('HMGET', key, unpack(fields))
  if v.err then
    return nil, 'the key holds a ' .. redis.call('TYPE', key)['ok'] .. ', not a hash'
  end
  if not v[1] and not v[3] and redis.call('EXISTS', key) == 0 then return nil, nil end
  if not v[1] or not ALLOWED[v[1]] then
    return nil, 'unknown status ' .. (v[1] and string.format('%q', string.sub(v[1], 1, 40)) or '(none)')
  end
  if not tonumber(v[3]) then return nil, 'history length hn is not a number' end
  for i, f in ipairs(extra or {}) do
    local x = v[3 + i]
    if (f == 'retries' or f == 'reroutes' or f == 'deaths') and x and not tonumber(x) then
      return nil, f .. ' is not a number'
    end
    if f == 'queue' and x and (#x > 64 or not string.find(x, '^[%w][%w_%.%-]*$')) then
      return nil, 'queue is not a valid queue name'
    end
    if f == 'prio' and x and not (tonumber(x) and PRIO[tonumber(x)]) then
      return nil, 'prio is not a priority from 0 to 9'
    end
    if (f == 'task' or f == 'args') and not x then return nil, 'field ' .. f .. ' is missing' end
  end
  return v
end

-- A record that did not validate: rename it aside (kept for inspection until it
-- expires), store a FAILED record carrying CorruptRecordError in its place so
-- that waiters get a clear error, and list it under `corrupt`. `was` is the
-- status it is assumed to have left (for the counts) and `owner` the runner
-- whose owned set may still hold it.
local function fail_corrupt(id, why, was, owner, actor, now)
  local key = ikey(id)
  if redis.call('TYPE', key)['ok'] == 'hash' then
    local st = redis.call('HGET', key, 'status')
    if st and FINAL[st] then return end  -- final already: waiters have their answer
    if st and ALLOWED[st] then was = st end
  end
  local aside = P .. 'corrupt:' .. id
  redis.call('RENAME', key, aside)
  redis.call('EXPIRE', aside, TTL)
  local doc = cjson.encode({cls = 'pynenc_ray.errors:CorruptRecordError', args = {id, why},
    message = 'invocation ' .. id .. ': its stored record is corrupt (' .. why .. ')',
    traceback = ''})
  redis.call('HSET', key, 'task', '', 'args', '', 'status', 'FAILED', 'error', doc,
    'h0', entry('FAILED', actor, 'corrupt record', now), 'hn', 1)
  redis.call('EXPIRE', key, TTL)
  redis.call('HSET', P .. 'corrupt', id, why)
  if owner and owner ~= '' then redis.call('SREM', P .. 'owned:' .. owner, id) end
  if was then count(was, -1) end
  count('FAILED', 1)
  count('CORRUPT', 1)
  announce(id)
end

-- Put id back at the front of its queue's level (it waited its turn already).
local function queue_front(queue, prio, id)
  if redis.call('LPUSH', qkey(queue, prio), id) == 1 then
    redis.call('SADD', P .. 'queues', queue)
    ring(queue)
  end
end

-- Queue the oldest claimable id set aside for running key `rck`, now free. An
-- id found corrupt on the way is failed in place; ids no longer claimable
-- (cancelled meanwhile) are dropped from the list.
local function unblock(rck, now)
  local held = P .. 'held:' .. rck
  while true do
    local nid = redis.call('LPOP', held)
    if not nid then
      redis.call('SREM', P .. 'heldkeys', rck)
      return
    end
    local v, why = read(nid, {'queue', 'prio'})
    if v and CLAIMABLE[v[1]] then
      queue_front(v[4] or 'default', tonumber(v[5] or 0), nid)
      if redis.call('LLEN', held) == 0 then redis.call('SREM', P .. 'heldkeys', rck) end
      return
    elseif why then
      fail_corrupt(nid, why, 'REGISTERED', nil, 'release', now)
    end
  end
end

-- id no longer runs: free its running key `rck` (if it holds it) and let the
-- next invocation set aside for that key go.
local function release(id, rck, now)
  local lock = P .. 'lock:' .. rck
  if redis.call('GET', lock) ~= id then return end
  redis.call('DEL', lock)
  unblock(rck, now)
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
  queue_ids(v[6] or 'default', v[7] or 0, {id})
  return true
end

-- Hand-off. A worker that runs one invocation at a time and serves one queue
-- (PersistentProcessRunner's) registers when a claim finds that queue empty
-- (claim_step), and then waits on its inbox as well as on the bell. A submit
-- into that queue claims the new invocation for the registered worker in the
-- same step, RUNNING and owned (enqueue.lua), and pushes it to the inbox: the
-- worker runs it without a claim round trip. A registration holds IDLE_SEC of
-- server time (more than a worker blocks between claims, each of which renews
-- it), so one left by a worker that died idle lapses on its own; a runner that
-- leaves (reroute of all it owns, forget, recovery) withdraws at once.
local IDLE_SEC = 5

-- The registered worker of `queue` to hand an invocation to, taken off the
-- registry: runner and worker label, or nil. Lapsed or malformed
-- registrations met on the way are dropped.
local function idle_worker(queue, now)
  local key = P .. 'idle:' .. queue
  while true do
    local top = redis.call('ZPOPMAX', key)
    if #top == 0 then return nil end
    local reg = redis.call('HGET', P .. 'idlers', top[1])
    local q, worker = string.match(reg or '', '^([^\t]*)\t(.+)$')
    if q == queue and tonumber(top[2]) >= now then return top[1], worker end
  end
end

-- Take id out of runner's inbox if it was handed there and not taken yet: it
-- was given back or cancelled, so the runner must not start it later.
local function unhand(runner, id)
  local inbox = P .. 'inbox:' .. runner
  if redis.call('EXISTS', inbox) == 0 then return end
  local t = redis.call('HMGET', ikey(id), 'task', 'args')
  if t[1] and t[2] then redis.call('LREM', inbox, 0, id .. '\n' .. t[1] .. '\n' .. t[2]) end
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

-- Every entry point calls this first: the call's prefix and TTL, and fresh
-- per-call state (a function library keeps its top-level values between calls).
local function begin(keys, argv)
  P = keys[1]
  TTL = tonumber(argv[1])
  delta, finals, inline, server_now = {}, {}, {}, nil
end
