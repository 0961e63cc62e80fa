-- Invocation records (inv:<id>): reading their fields by name (fields_of, and
-- read, which checks the fields a step relies on), and failing in place a
-- record that does not validate (fail_corrupt).

local function ikey(id) return P .. 'inv:' .. id end

-- The fields `names` of record id as stored, unchecked: a table keyed by
-- field name (an absent field reads as false); or nil when the key is not a
-- hash. Off the hot path (see READS for the reads on it).
local function fields_of(id, names)
  local values = redis.pcall('HMGET', ikey(id), unpack(names))
  if values.err then return nil end
  local rec = {}
  for i, f in ipairs(names) do rec[f] = values[i] end
  return rec
end

-- What makes each field that read() may be asked for (scripts.READS) valid: a
-- check that returns why the stored value x is not (x is false when absent).
local function counter(field)
  return function(x) if x and not tonumber(x) then return field .. ' is not a number' end end
end
local function required(field)
  return function(x) if not x then return 'field ' .. field .. ' is missing' end end
end
local function any() end
local FIELD_CHECKS = {
  retries = counter('retries'), reroutes = counter('reroutes'), deaths = counter('deaths'),
  queue = function(x)
    if x and not is_queue(x) then return 'queue is not a valid queue name' end
  end,
  prio = function(x)
    if x and not is_priority(x) then
      return 'prio is not a priority from ' .. MIN_PRIORITY .. ' to ' .. MAX_PRIORITY
    end
  end,
  task = required('task'), args = required('args'), rck = any, alone = any,
}

-- What each step's read() takes, generated from scripts.READS: `fields`, the
-- list for HMGET (status, owner and hn, which every read checks, then the
-- step's own, each one of FIELD_CHECKS), and `record`, which makes HMGET's
-- reply a table keyed by those names in one constructor. Built once, where the
-- library loads: a table filled key by key grows (and is copied) four times on
-- the way to a claim's nine fields, which cost a read about half as much again.
local READS = __READS__
local READ_CHECKED_FROM = __READ_CHECKED_FROM__  -- fields[i] from here are a step's own

-- Read a record with one HMGET of `how.fields` (`how` one of READS) and check
-- the fields. Returns them as a table keyed by field name (rec.status,
-- rec.args; an absent field reads as false); or nil and why the record is
-- corrupt; or nil, nil when there is no record at all.
local function read(id, how)
  local key = ikey(id)
  -- one HMGET on the hot path; its error reply (WRONGTYPE) is a corrupt record
  local fields = how.fields
  local values = redis.pcall('HMGET', key, unpack(fields))
  if values.err then
    return nil, 'the key holds a ' .. redis.call('TYPE', key)['ok'] .. ', not a hash'
  end
  local rec = how.record(values)
  if not rec.status and not rec.hn and redis.call('EXISTS', key) == 0 then return nil, nil end
  if not rec.status or not ALLOWED[rec.status] then
    return nil, 'unknown status ' .. (rec.status and
      string.format('%q', string.sub(rec.status, 1, 40)) or '(none)')
  end
  if not tonumber(rec.hn) then return nil, 'history length hn is not a number' end
  for i = READ_CHECKED_FROM, #fields do
    local why = FIELD_CHECKS[fields[i]](rec[fields[i]])
    if why then return nil, why end
  end
  return rec
end

-- Append claimed invocation id, its record read for a claim, to `out` as a
-- claim's flat reply holds it: CLAIM_FIELDS values (arguments.py), id, task,
-- args, retries, deaths, alone (1 or 0), from which Python builds a Claimed.
local function append_claimed(out, id, rec)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3] = id, rec.task, rec.args
  out[n + 4], out[n + 5] = rec.retries or 0, rec.deaths or 0
  out[n + 6] = rec.alone and 1 or 0
end

-- A record that did not validate: rename it aside (kept for inspection until it
-- expires), store a FAILED record carrying CorruptRecordError in its place so
-- that waiters get a clear error, and list it under `corrupt`. `was` is the
-- status it is assumed to have left (for the counts) and `owner` the runner
-- whose owned set may still hold it.
local function fail_corrupt(id, why, was, owner, actor)
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
    'h0', entry('FAILED', actor, 'corrupt record'), 'hn', 1)
  redis.call('EXPIRE', key, TTL)
  redis.call('HSET', P .. 'corrupt', id, why)
  if owner and owner ~= '' then redis.call('SREM', P .. 'owned:' .. owner, id) end
  if was then count(was, -1) end
  count('FAILED', 1)
  count('CORRUPT', 1)
  announce(id)
end
