-- forget: drop `runner`, which stopped cleanly, from the runner list, but only
-- when it holds nothing: a runner whose hand-back did not reach Redis (it
-- stopped during an outage) must stay visible to recovery, which reroutes its
-- work once its last heartbeat is dead_after_sec old. Its entry in 'beats'
-- stays even then, for recovery to sweep later: a claim the runner sent on
-- another connection may still reach Redis after this script (a frozen Redis
-- runs a dead client's buffered commands when it resumes), and recovery then
-- reroutes what that claim took instead of leaving it owned by nobody alive.
-- Returns 1 when forgotten, 0 when left for recovery.
local runner = A.runner
withdraw(runner)
if redis.call('SCARD', P .. 'owned:' .. runner) > 0 then return 0 end
redis.call('HDEL', P .. 'runners', runner)
return 1
