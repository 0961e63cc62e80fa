-- finish_claim: a worker that runs one invocation at a time stores the final
-- write of the one it ran and claims its next, in one step and one round trip
-- instead of two (see finish_step.lua and claim_step.lua). The finish comes
-- first, so the invocation's running key is released before the claim looks.
-- A refused finish raises before anything is written, claim included.
-- Arguments: the claim step's (runner, worker, n, start, promote, handoff), the
-- finished invocation's id, status, payload and the worker it ran on (ran_on),
-- then the served queues.
-- Returns {'OK' or 'DROP', the claim's flat list (as claim.lua's)}; a fenced
-- runner (see fence in transitions.lua) gets PYNENC_FENCED, its finish unwritten
-- (it would be dropped: the runner owns nothing any more).
refuse_fenced(A.runner, 'claim work')
local finished = finish_step(A.runner,
  {{id = A.id, status = A.status, payload = A.payload, worker = A.ran_on}})
local claimed = claim_step(A)
commit()
return {finished[1], claimed}
