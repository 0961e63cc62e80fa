-- trigger_watch: from now on, log each move of an invocation of `task` into
-- `status` for each (task, status) of the tail (see occurred in
-- transitions.lua), for ttl seconds after the last call; what is watched
-- already stays. Returns 1.
local fields = {}
for _, pair in ipairs(A.pairs) do
  fields[#fields + 1] = pair.task .. '\t' .. pair.status
  fields[#fields + 1] = 1
end
local key = P .. 'watch'
push_all('HSET', key, fields)
redis.call('EXPIRE', key, math.max(1, math.floor(TTL)))
WATCHED[P] = true
return 1
