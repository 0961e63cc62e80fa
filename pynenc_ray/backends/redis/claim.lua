-- claim: take up to n invocations as PENDING owned by runner, in one step, so a
-- crash never leaves an id popped but unowned. With start = 1 (a runner that
-- starts them at once) they go on to RUNNING in the same step. With promote = 1,
-- due delayed retries are queued first (the caller asks for it a few times a
-- second, not on every claim). With inflight = 1, ids the runner's BLMOVE parked
-- in inflight:<runner> come before the queue (the caller asks after a BLMOVE,
-- and until a claim that looked there has succeeded). Ids no longer claimable
-- (final, expired) are skipped; a corrupt record is failed in place
-- (fail_corrupt) and the claim goes on. Each id is read and checked before
-- anything about it is written.
-- ARGV[2..]: runner, worker, now, n, start, promote, inflight.
-- Returns a flat list: id, task, args, retries, deaths per claimed invocation.
local runner, worker, now, n = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local moves = ARGV[6] == '1' and {'PENDING', 'RUNNING'} or {'PENDING'}
if ARGV[7] == '1' then
  local due = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
  if #due > 0 then
    redis.call('ZREM', P .. 'delayed', unpack(due))
    push_all('RPUSH', P .. 'queue', due)
  end
end
local sources = {P .. 'queue'}
if ARGV[8] == '1' then sources = {P .. 'inflight:' .. runner, P .. 'queue'} end
local out, owned = {}, {}
for _, src in ipairs(sources) do
  while #owned < n do
    local want = n - #owned
    local ids = redis.call('LPOP', src, want)
    if not ids then break end
    for _, id in ipairs(ids) do
      local v, why = read(id, {'task', 'args', 'retries', 'deaths'})
      if v and CLAIMABLE[v[1]] then
        move(id, v[3], v[1], moves, runner, worker, now, runner)
        owned[#owned + 1] = id
        out[#out + 1] = id
        out[#out + 1] = v[4]
        out[#out + 1] = v[5]
        out[#out + 1] = v[6] or 0
        out[#out + 1] = v[7] or 0
      elseif why then
        fail_corrupt(id, why, 'REGISTERED', nil, runner, now)
      end
    end
    if #ids < want then break end  -- the list is empty now: no second LPOP to learn it
  end
end
if #owned > 0 then push_all('SADD', P .. 'owned:' .. runner, owned) end
commit()
return out
