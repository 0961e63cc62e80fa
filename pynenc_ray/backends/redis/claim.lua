-- claim: take up to n invocations as PENDING owned by runner (RUNNING at once
-- with start), in one step; see claim_step.lua.
-- Arguments: the claim step's (runner, worker, n, start, promote, handoff),
-- then the served queues.
-- Returns a flat list: id, task, args, retries, deaths, alone per claimed invocation;
-- raises PYNENC_FENCED for a fenced runner (see fence in transitions.lua).
refuse_fenced(A.runner, 'claim work')
local out = claim_step(A)
commit()
return out
