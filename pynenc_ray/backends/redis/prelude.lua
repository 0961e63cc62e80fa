-- The core of the library every entry point shares: the key layout, the
-- per-call state (prefix, TTL, counts, announcements, server clock) that
-- begin() sets, the check of a call's argument count, the status tables, and
-- the history entry. The
-- other shared files follow it in this order (scripts.py): queues.lua,
-- records.lua, concurrency.lua, transitions.lua, handoff.lua. Each is loaded
-- once as the top of the function library (and prepended to each script where
-- functions are refused).
--
-- Every entry point takes one key, KEYS[1]: the app's key prefix
-- "pynenc:{<app_id>}:". Every key below starts with it, so the hash tag
-- {<app_id>} puts all of an app's keys in one slot of a Redis Cluster (or one
-- shard behind a key-aware proxy), which KEYS[1] names. Keys of invocations a
-- script only learns as it runs (claim pops ids) cannot be listed up front;
-- they share the slot. Its arguments (ARGV) are declared in arguments.py, the
-- record lifetime ttl (result_ttl_sec) first, and reach the entry point's code
-- by name, as the table A (see fit, below).
-- Keys under the prefix:
--   inv:<id>         HASH  task, args, status, owner (meaningful while PENDING,
--                          RUNNING or PAUSED), queue and prio (written only when
--                          not the defaults, see queues.lua), retries, reroutes
--                          (every hand-back), deaths (hand-backs because the
--                          worker died: what max_reroutes counts), parent, rck
--                          (its running key), result, error, and the status
--                          history: hn entries h0 .. h<hn-1>, each JSON
--                          [status, runner_id, worker, server timestamp]. One
--                          HSET moves the status and appends its history entry.
--   corrupt:<id>     any   a record that could not be read, renamed aside for
--                          inspection (expires after result_ttl_sec)
--   corrupt          HASH  id -> why its record was set aside (what `status` lists)
--   waits:<id>       SET   invocations that <id> is waiting on (cycle detection)
--   queue:<q>:<p>    LIST  ids to run in queue <q> at priority <p>, oldest first
--   queues           SET   names of the queues that have held work (for status)
--   bell:<q>         LIST  a token when queue <q> may have work no runner is about
--                          to claim; idle runners block on their queues' bells
--   delayed:<q>      ZSET  ids of queue <q>'s delayed calls and retries, scored by
--                          their due time (server time)
--   lock:<key>       STRING  the invocation holding running-concurrency key <key>
--                          (the record field rck); meaningful while it is owned
--   held:<key>       LIST  ids a claim set aside while <key> was held, oldest first
--   heldkeys         SET   keys with ids set aside (recovery sweeps stale locks)
--   reg:<key>        STRING  the invocation registered under registration key <key>
--   lease:<name>     STRING  who holds a lease (recovery, cron), with a TTL
--   cron             HASH  task id -> the last due time its cron schedule fired
--                          (written by the cron leader, not by these scripts)
--   watch            HASH  "<task id>\t<status>" -> 1 for each move a trigger waits
--                          for (pynenc_ray.triggers; expires result_ttl_sec after
--                          the last runner renewed it)
--   occ              STREAM the trigger log: one entry per watched move, written by
--                          the move's own script (kind "status", id, task, st, at),
--                          and per emitted event (kind "event", name, payload, at);
--                          capped near OCC_MAX entries
--   trigger:cursor   STRING the last occ entry the trigger drainer took
--   trigger:state    STRING the trigger drainer's state (pending conditions, fired)
--   owned:<run>      SET   ids a runner owns (PENDING, RUNNING, PAUSED)
--   fenced:<run>     STRING  the runner that declared runner <run> gone and
--                          rerouted its work (a fence, see transitions.lua), with
--                          a TTL of result_ttl_sec
--   idle:<q>         ZSET  runners waiting for a hand-off from queue <q>, each scored
--                          by the server time until which its registration holds
--   idlers           HASH  runner -> "<queue>\t<worker>" of its hand-off registration
--   inbox:<run>      LIST  ids handed to a runner, RUNNING and owned by it
--                          already (a wake-up: each is taken as its record backs it)
--   runners          HASH  runner_id -> JSON info from its last heartbeat
--   beats            ZSET  runner_id scored by its last heartbeat (server time)
--   counts           HASH  status -> number of invocations in it (finals: totals);
--                          CORRUPT: records set aside
--   registered       STREAM  the ids each enqueue registered, one entry per
--                          enqueue (the ids its field names), its stream id the
--                          server time: the timelines' index, trimmed past
--                          result_ttl_sec by recover (log_ids, below)
--   ended            STREAM  likewise the ids that became final, one entry per
--                          step (for status's recent window), trimmed by recover
--                          past FINISHED_KEEP_SEC (an hour) or result_ttl_sec
--   lease:recovery   STRING  which runner is rerouting dead runners' work, with a TTL
--   lastbeat         STRING  server time of the app's last heartbeat, from any runner
--   grace            STRING  until when recovery waits after an outage (see heartbeat)
--   final            channel: ids that became final, each announced as a line
--                          "<id>\n", or "<id> <status> <n>\n" followed by the n
--                          bytes of its payload when n <= INLINE_MAX (the
--                          listener then serves .result without a read)
--
-- Every time stored is the server's (Redis TIME): history entries, due times,
-- heartbeats, hand-off registrations, the stream ids of the registered and
-- ended logs. Callers send durations (a delay), never a time of their own clock.
--
-- Every script validates what it reads before it writes anything, so it either
-- completes or changes nothing: Redis does not roll back a script that fails
-- half-way. Data read here is untrusted: a record that does not validate is
-- failed in place (see fail_corrupt in records.lua), never allowed to abort a
-- step that also carries other invocations.
--
-- The values written as capitals between double underscores are filled in by
-- scripts.py, generated from Python: the statuses from pynenc_ray/status.py,
-- the queue rules from pynenc_ray/queues.py (and each entry point's argument
-- binding from arguments.py). One declaration for Python and Lua alike.
--
-- This chunk runs once when the library is loaded, so nothing here may depend
-- on a call: what does (the prefix, the TTL, the counts and finals gathered for
-- commit, the server clock) is set for each call by begin().

local P, TTL
local ALLOWED = __ALLOWED__
local OWNED = __OWNED__
local FINAL = __FINAL__
local CLAIMABLE = __CLAIMABLE__
local INLINE_MAX = __INLINE_MAX__
-- values per invocation in a claim's flat reply (claim_step.lua)
local CLAIM_FIELDS = __CLAIM_FIELDS__

-- Push many values with as few commands as Lua's unpack allows.
local function push_all(cmd, key, values)
  for i = 1, #values, 1000 do
    redis.call(cmd, key, unpack(values, i, math.min(i + 999, #values)))
  end
end

-- Every stored time comes from the server's clock, never a caller's: two hosts'
-- clocks (or one process pre-empted between reading its clock and its call)
-- could otherwise write a record's history out of order, or judge a due time
-- by another clock than the one that set it. Redis runs scripts one at a time,
-- so server time orders every record's entries. Read once per script, and only
-- by a script that needs it.
local server_now
local function clock()
  if not server_now then
    local t = redis.call('TIME')
    server_now = tonumber(t[1]) + tonumber(t[2]) / 1e6
  end
  return server_now
end

-- Append ids to the stream `key` (registered, ended) as one entry whose field
-- names are the ids (values empty), its stream id the server's time: a
-- timeline read takes a window with XRANGE and recover trims it by time
-- (XTRIM MINID). An append costs Redis less than a sorted set's ZADD and
-- holds an id in under half the memory; the order is the stream's, which
-- never goes back, even when the server's clock does.
-- A key of another type there (someone else's write) is dropped and the log
-- started again, as recovery would drop it: the append comes after the step's
-- records are written, and failing it would leave a step done that its caller
-- was told failed. Only the timeline index of what the old key held is lost.
local LOG_ENTRY_IDS = 100  -- ids per entry at most, so that a page of entries stays small
local function log_ids(key, ids)
  for i = 1, #ids, LOG_ENTRY_IDS do
    local fields = {}
    for j = i, math.min(i + LOG_ENTRY_IDS - 1, #ids) do
      fields[#fields + 1] = ids[j]
      fields[#fields + 1] = ''
    end
    local added = redis.pcall('XADD', key, '*', unpack(fields))
    if type(added) == 'table' and added.err then
      if not string.find(added.err, 'WRONGTYPE', 1, true) then error(added) end  -- as redis.call would
      redis.call('DEL', key)
      redis.call('XADD', key, '*', unpack(fields))
    end
  end
end

-- The stream id of server time t (seconds): the first entry appended at or
-- after t, for XRANGE's and XTRIM MINID's bounds. Never negative (a huge
-- result_ttl_sec or window reaches back before 1970), which Redis refuses.
local function stream_id(t) return string.format('%d', math.max(0, math.floor(t * 1000))) end

-- Trim log `key` (see log_ids) to what was appended since server time
-- `oldest`. XADD '*' never goes back, so a log written while the server's
-- clock ran ahead keeps ids in the future after the clock is set right: it
-- would neither be trimmed nor fall out of a status window until real time
-- caught up. A log whose newest entry is more than a minute ahead of now is
-- dropped instead (the records stay; only the timeline index of what it held
-- goes), and the next append starts it again at the right time. So is a key
-- that is not a stream (written by someone else): every append would fail on it.
local function trim_log(key, oldest)
  local newest = redis.pcall('XREVRANGE', key, '+', '-', 'COUNT', 1)
  local top = not newest.err and newest[1]
  local ahead = top and (tonumber(string.match(top[1], '^%d+')) or 0) > (clock() + 60) * 1000
  if newest.err or ahead then
    redis.call('DEL', key)
  else
    redis.call('XTRIM', key, 'MINID', stream_id(oldest))
  end
end

-- Append to `out` the newest ids of log `key` (see log_ids) appended since
-- stream id `since`, at most `room` of them: a page of entries at a time, so
-- a window over a large batch reads no more than it keeps (a page holds at
-- most LOG_PAGE * LOG_ENTRY_IDS ids). A key of another type reads as empty
-- (the next append or recovery drops it).
local LOG_PAGE = 50  -- entries per XREVRANGE
local function newest_ids(key, since, room, out)
  local upto = '+'
  while room > 0 do
    local page = redis.pcall('XREVRANGE', key, upto, since, 'COUNT', LOG_PAGE)
    if page.err then return end
    for _, e in ipairs(page) do
      for i = 1, #e[2], 2 do
        if room == 0 then return end
        out[#out + 1] = e[2][i]
        room = room - 1
      end
    end
    if #page < LOG_PAGE then return end
    upto = '(' .. page[#page][1]  -- the next page: older than this one's last entry
  end
end

-- Status count changes and newly final ids, applied once per script by commit():
-- the counts, the ended log and one PUBLISH that wakes the waiters of every
-- final. A final announced with a small payload (announce) carries it there.
local FINISHED_KEEP_SEC = 3600  -- how long the ended log keeps an id (recover.lua)
local delta, finals, inline
local watching  -- whether the app watches any move (transitions.lua's occurred); nil: unread
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
  log_ids(P .. 'ended', finals)
  redis.call('PUBLISH', P .. 'final', table.concat(lines))
end

-- One history entry, JSON [status, runner, worker, server time]: who moved the
-- invocation to `status`, and when. parse_entry reads one back, keyed by name;
-- nil when it does not parse (stored data is untrusted).
local function entry(status, runner, worker)
  return cjson.encode({status, runner, worker, clock()})
end
local function parse_entry(raw)
  local ok, e = pcall(cjson.decode, raw or '')
  if not ok or type(e) ~= 'table' then return nil end
  return {status = e[1], runner = e[2], worker = e[3], at = e[4]}
end

-- Each entry point starts with code generated from arguments.py (scripts.py
-- puts it there): fit() checks the ARGV count, then its arguments are bound by
-- name into the table A, converted by kind, and begin() starts the call.

-- Raise, before anything is done, unless argv holds entry point `name`'s n
-- arguments and then (with a tail) a whole number of groups of `width`.
local function fit(argv, name, n, tail, width)
  if #argv < n or (not tail and #argv > n) or (tail and (#argv - n) % width ~= 0) then
    error({err = 'PYNENC_ARGUMENTS ' .. name .. ' takes ' .. n .. ' arguments' ..
      (tail and (', then ' .. tail .. ' in groups of ' .. width) or '') .. '; got ' .. #argv})
  end
end

-- Every entry point calls this once its arguments A are bound: the call's
-- prefix and TTL, and fresh per-call state (a function library keeps its
-- top-level values between calls).
local function begin(keys, A)
  P = keys[1]
  TTL = A.ttl
  delta, finals, inline, server_now, watching = {}, {}, {}, nil, nil
end
