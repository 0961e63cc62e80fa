-- finish: store the final status and result or error of each invocation, in
-- one step (see finish_step.lua).
-- Arguments: runner (the owner), then the items (id, status, payload, worker).
-- Returns 'OK' or 'DROP' per item, in order.
local out = finish_step(A.runner, A.items)
commit()
return out
