-- snapshot: everything `status` shows, read in one step so the numbers agree:
-- the server's time, status counts, runners and their last beats, each queue's
-- depth (every level) and scheduled count, the corrupt records set aside, and
-- for each invocation registered, or become final, in the last `window`
-- seconds (at most 5000): task, status and, once final, when. Reads only.
-- Numbers go out as strings (a Lua number would reach the caller truncated to
-- an integer).
local now = clock()
local queues = {}
for _, q in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  local depth = 0
  for p = MIN_PRIORITY, MAX_PRIORITY do depth = depth + redis.call('LLEN', qkey(q, p)) end
  queues[#queues + 1] = {q, tostring(depth), tostring(redis.call('ZCARD', P .. 'delayed:' .. q))}
end
local recent, seen = {}, {}
-- the window: what was registered in it, then what became final in it (a
-- delayed or long call registered before it), the newest first, at most 5000
-- ids from each log
local ids, since = {}, stream_id(now - A.window)
newest_ids(P .. 'registered', since, 5000, ids)
newest_ids(P .. 'ended', since, 5000, ids)
for _, id in ipairs(ids) do
  local rec = not seen[id] and #recent < 5000 and fields_of(id, {'task', 'status', 'hn'})
  seen[id] = true
  if rec and rec.task and rec.status and tonumber(rec.hn) then
    local final_at = ''
    if FINAL[rec.status] then
      local last = parse_entry(redis.call('HGET', ikey(id), 'h' .. (tonumber(rec.hn) - 1)))
      if last and tonumber(last.at) then final_at = tostring(last.at) end
    end
    recent[#recent + 1] = {rec.task, rec.status, final_at}
  end
end
local beats = redis.call('ZRANGE', P .. 'beats', 0, -1, 'WITHSCORES')
return {tostring(now), redis.call('HGETALL', P .. 'counts'), redis.call('HGETALL', P .. 'runners'),
  beats, queues, redis.call('HGETALL', P .. 'corrupt'), recent}
