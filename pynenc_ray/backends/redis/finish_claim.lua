-- finish_claim: a worker that runs one invocation at a time stores the final
-- write of the one it ran and claims its next, in one step and one round trip
-- instead of two (see finish_step.lua and claim_step.lua). The finish comes
-- first, so the invocation's running key is released before the claim looks.
-- A refused finish raises before anything is written, claim included.
-- ARGV[2..]: runner, worker, now, n, start, promote, handoff, then the finished
-- invocation's id, status, payload and worker, then the served queues.
-- Returns {'OK' or 'DROP', the claim's flat list (as claim.lua's)}.
local runner, now = ARGV[2], ARGV[4]
local finished = finish_step(runner, now, ARGV, 9, 9)
local queues = {}
for i = 13, #ARGV do queues[#queues + 1] = ARGV[i] end
local claimed = claim_step(runner, ARGV[3], now, tonumber(ARGV[5]), ARGV[6] == '1',
  ARGV[7] == '1', queues, ARGV[8] == '1')
commit()
return {finished[1], claimed}
