-- finish: store the final status and result or error of each invocation, in
-- one step (see finish_step.lua).
-- ARGV[2..]: runner, now, then (id, status, payload, worker) per invocation.
-- Returns 'OK' or 'DROP' per invocation, in order.
local out = finish_step(ARGV[2], ARGV[3], ARGV, 4, #ARGV)
commit()
return out
