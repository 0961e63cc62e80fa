-- lease: take the lease ARGV[2] for holder ARGV[3] for ARGV[4] ms when it is free
-- or already this holder's (then renewed). Returns 1 when the holder has it.
local key, holder, ms = P .. 'lease:' .. ARGV[2], ARGV[3], ARGV[4]
local current = redis.call('GET', key)
if current and current ~= holder then return 0 end
redis.call('SET', key, holder, 'PX', ms)
return 1
