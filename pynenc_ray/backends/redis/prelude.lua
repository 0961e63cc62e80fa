-- Shared by every script (prepended when the scripts are loaded).
--
-- Every script takes the key prefix "pynenc:<app_id>:" as ARGV[1]. Keys under it:
--   inv:<id>         HASH  task, args, status, owner (meaningful while PENDING,
--                          RUNNING or PAUSED), retries, reroutes, parent, result,
--                          error, and the status history: hn entries h0 .. h<hn-1>,
--                          each JSON [status, runner_id, worker, timestamp]. One
--                          HSET moves the status and appends its history entry.
--   waits:<id>       SET   invocations that <id> is waiting on (cycle detection)
--   queue            LIST  ids to run, oldest at the head
--   delayed          ZSET  ids of retries waiting for their delay, scored by due time
--   inflight:<run>   LIST  ids a runner's blocking BLMOVE took, not yet claimed
--   owned:<run>      SET   ids a runner owns (PENDING, RUNNING, PAUSED)
--   runners          HASH  runner_id -> JSON info from its last heartbeat
--   beats            ZSET  runner_id scored by its last heartbeat (server time)
--   counts           HASH  status -> number of invocations in it (finals: totals)
--   index            ZSET  invocation ids scored by registration time (for timelines),
--                          pruned past result_ttl_sec by recover
--   lease:recovery   STRING  which runner is rerouting dead runners' work, with a TTL
--   final            channel: PUBLISHed, comma-separated ids that became final
--
-- The status tables below are generated from pynenc_ray/status.py: one
-- declaration for Python and Lua alike.

local P = ARGV[1]
local ALLOWED = __ALLOWED__
local OWNED = __OWNED__
local FINAL = __FINAL__
local CLAIMABLE = __CLAIMABLE__

local function ikey(id) return P .. 'inv:' .. id end

-- Status count changes, applied once per script by flush_counts().
local delta = {}
local function count(status, n) delta[status] = (delta[status] or 0) + n end
local function flush_counts()
  for status, n in pairs(delta) do
    if n ~= 0 then redis.call('HINCRBY', P .. 'counts', status, n) end
  end
end

local function entry(status, runner, worker, now)
  return cjson.encode({status, runner, worker, tonumber(now)})
end

-- Move id from `cur` to each status of `moves` in turn (one HSET: status, owner,
-- history entries and any `extra` field/value pairs). `hn` is its history length.
local function move(id, hn, cur, moves, runner, worker, now, owner, extra)
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
end

-- The rule of status.check_transition. Returns 'APPLY' or 'DROP', or raises
-- an error reply ("PYNENC_TRANSITION ..." / "PYNENC_OWNERSHIP ...") before any write.
local function check(id, cur, new, owner, actor, recovery)
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
-- Skips ids that are no longer held (already final or rerouted).
local function reroute(id, by, worker, now, recovery)
  local cur, owner, hn, reroutes = unpack(redis.call('HMGET', ikey(id), 'status', 'owner', 'hn', 'reroutes'))
  if not cur or not OWNED[cur] then return false end
  if owner ~= by and not recovery then return false end
  if owner and owner ~= '' then redis.call('SREM', P .. 'owned:' .. owner, id) end
  move(id, hn, cur, {'REROUTED'}, by, worker, now, nil, {'reroutes', tonumber(reroutes or 0) + 1})
  redis.call('RPUSH', P .. 'queue', id)
  return true
end

-- Put back what a runner's blocking pop had moved but not yet claimed.
local function return_inflight(runner)
  local key = P .. 'inflight:' .. runner
  while redis.call('LMOVE', key, P .. 'queue', 'RIGHT', 'LEFT') do end
end

-- Push many values with as few commands as Lua's unpack allows.
local function push_all(cmd, key, values)
  for i = 1, #values, 1000 do
    redis.call(cmd, key, unpack(values, i, math.min(i + 999, #values)))
  end
end
