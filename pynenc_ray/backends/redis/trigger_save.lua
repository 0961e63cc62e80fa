-- trigger_save: store the trigger drainer's cursor (the last occ entry it took)
-- and its state, and trim the log up to that entry, unless another drainer
-- saved since this one read `expected` (two drainers across a lease hand-over
-- both compute the same firings; only the first save counts).
-- Returns 1 when stored, 0 when the saved cursor is no longer `expected`.
local ck = P .. 'trigger:cursor'
if (redis.call('GET', ck) or '') ~= A.expected then return 0 end
redis.call('SET', ck, A.cursor)
redis.call('SET', P .. 'trigger:state', A.state)
if A.cursor ~= '' then
  redis.call('XTRIM', P .. 'occ', 'MINID', A.cursor)  -- keeps the cursor's own entry
end
return 1
