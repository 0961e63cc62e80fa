-- take_handoffs: the items a worker popped from its inbox (BLMPOP: see
-- handoff.lua), each taken only if its record says it was handed to runner and
-- is still its to run (take_handed). The inbox is a wake-up with ids, not a
-- source of work: an id pushed there by anything but a hand-off, or given back
-- or cancelled since, is skipped.
-- Returns the claim's flat list: id, task, args, retries, deaths, alone per item taken.
local out = {}
for _, item in ipairs(A.items) do take_handed(A.runner, item, out) end
commit()
return out
