-- finish: store the result (SUCCESS) or error (FAILED), the final status and
-- release ownership at once; the first final write wins, a late one from a
-- former owner is dropped. Sets the record's TTL and wakes waiters.
-- ARGV: prefix, id, status, payload, runner, worker, now, ttl_sec.
local id, new, payload, runner, worker, now, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local cur, owner = unpack(redis.call('HMGET', ikey(id), 'status', 'owner'))
if not cur then return redis.error_reply('PYNENC_MISSING invocation ' .. id .. ' is not stored') end
if check(id, cur, new, owner, runner, false) == 'DROP' then return 'DROP' end
redis.call('HSET', ikey(id), new == 'SUCCESS' and 'result' or 'error', payload)
redis.call('HDEL', ikey(id), 'owner')
redis.call('SREM', P .. 'owned:' .. runner, id)
set_status(id, cur, new, runner, worker, now)
redis.call('EXPIRE', ikey(id), ttl)
redis.call('EXPIRE', P .. 'hist:' .. id, ttl)
redis.call('PUBLISH', P .. 'final', id)
return 'OK'
