-- claim: take up to n invocations as PENDING owned by runner (RUNNING at once
-- with start = 1), in one step; see claim_step.lua.
-- ARGV[2..]: runner, worker, now, n, start, promote, handoff, then the served queues.
-- Returns a flat list: id, task, args, retries, deaths per claimed invocation.
local queues = {}
for i = 9, #ARGV do queues[#queues + 1] = ARGV[i] end
local out = claim_step(ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1',
  ARGV[7] == '1', queues, ARGV[8] == '1')
commit()
return out
