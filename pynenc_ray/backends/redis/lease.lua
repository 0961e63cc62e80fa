-- lease: take the lease `name` for `holder` for `ms` milliseconds when it is
-- free or already this holder's (then renewed). Returns 1 when the holder has it.
local key, holder = P .. 'lease:' .. A.name, A.holder
local current = redis.call('GET', key)
if current and current ~= holder then return 0 end
redis.call('SET', key, holder, 'PX', A.ms)
return 1
