-- Shared by every script (prepended when the scripts are loaded).
--
-- Every script takes the key prefix "pynenc:<app_id>:" as ARGV[1]. Keys under it:
--   inv:<id>         HASH  task, args, status, owner, retries, reroutes, parent, result, error
--   hist:<id>        LIST  status history, JSON [status, runner_id, worker, timestamp]
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
--   final            channel: PUBLISHed invocation id when one becomes final
--
-- The status tables below are generated from pynenc_ray/status.py: one
-- declaration for Python and Lua alike.

local P = ARGV[1]
local ALLOWED = __ALLOWED__
local OWNED = __OWNED__
local FINAL = __FINAL__
local CLAIMABLE = __CLAIMABLE__

local function ikey(id) return P .. 'inv:' .. id end

-- Append one history entry.
local function record(id, status, runner, worker, now)
  redis.call('RPUSH', P .. 'hist:' .. id, cjson.encode({status, runner, worker, tonumber(now)}))
end

-- Move id from status `old` to `new`, keeping counts and history.
local function set_status(id, old, new, runner, worker, now)
  redis.call('HSET', ikey(id), 'status', new)
  if old then redis.call('HINCRBY', P .. 'counts', old, -1) end
  redis.call('HINCRBY', P .. 'counts', new, 1)
  record(id, new, runner, worker, now)
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
  local cur, owner = unpack(redis.call('HMGET', ikey(id), 'status', 'owner'))
  if not cur or not OWNED[cur] then return false end
  if owner ~= by and not recovery then return false end
  redis.call('HDEL', ikey(id), 'owner')
  if owner then redis.call('SREM', P .. 'owned:' .. owner, id) end
  redis.call('HINCRBY', ikey(id), 'reroutes', 1)
  set_status(id, cur, 'REROUTED', by, worker, now)
  redis.call('RPUSH', P .. 'queue', id)
  return true
end

-- Put back what a runner's blocking pop had moved but not yet claimed.
local function return_inflight(runner)
  local key = P .. 'inflight:' .. runner
  while redis.call('LMOVE', key, P .. 'queue', 'RIGHT', 'LEFT') do end
end
