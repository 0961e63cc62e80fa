-- Invocation records (inv:<id>): reading one with the fields a step relies on
-- checked (read), and failing in place one that does not validate (fail_corrupt).

local function ikey(id) return P .. 'inv:' .. id end

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
    if f == 'queue' and x and not is_queue(x) then
      return nil, 'queue is not a valid queue name'
    end
    if f == 'prio' and x and not is_priority(x) then
      return nil, 'prio is not a priority from ' .. MIN_PRIORITY .. ' to ' .. MAX_PRIORITY
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

