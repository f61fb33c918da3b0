"""The budget's Lua scripts: each runs atomically inside Redis, so runs on many machines never race each other.

Every script gets the same keys, in this order (``Keys.for_day``; docs/budget.md describes each one):

    KEYS[1]  leases         sorted set: lease key -> the instant it expires, in ms of Redis's own clock
    KEYS[2]  project        hash: lease key -> project
    KEYS[3]  host           hash: lease key -> host
    KEYS[4]  units          hash: lease key -> units reserved (the estimate, until charged)
    KEYS[5]  since          hash: lease key -> when the slot was taken (ms)
    KEYS[6]  cooldown       string with a time to live: while it exists, nobody is admitted
    KEYS[7]  spent:DAY      string: units charged on that (UTC) day
    KEYS[8]  charged:DAY    hash: lease key -> units charged for it that day (a release counted twice counts once)
    KEYS[9]  slots          string: the slot count last given (shown by ``orchestrator budget``)
    KEYS[10] cap            string: the spend cap last given, empty for none
    KEYS[11] retired        sorted set: lease key -> when it was released or re-keyed away (ms), kept one ttl,
                            so that a refresh crossing a release on the way never takes that lease back

Time comes from Redis (``TIME``), never from the callers: the machines' clocks may disagree, Redis's is one.
Expiry is by score, done by the admission script itself (``sweep``): no background task has to be alive for a
killed run's slots to come back. Numbers leave as strings (Redis turns a Lua number into an integer).
"""

from __future__ import annotations

from typing import Final

_PRELUDE: Final = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function forget(lease)
  redis.call('ZREM', KEYS[1], lease)
  for i = 2, 5 do redis.call('HDEL', KEYS[i], lease) end
end

local function take(lease, project, host, units, now, ttl)
  redis.call('ZADD', KEYS[1], now + ttl, lease)
  redis.call('HSET', KEYS[2], lease, project)
  redis.call('HSET', KEYS[3], lease, host)
  redis.call('HSET', KEYS[4], lease, units)
  redis.call('HSET', KEYS[5], lease, now)
end

-- Counts ``units`` as charged for ``lease``: the last charge of a lease stands, so counting one twice is harmless.
local function charge(lease, units)
  local old = tonumber(redis.call('HGET', KEYS[8], lease) or '0')
  redis.call('HSET', KEYS[8], lease, tostring(units))
  redis.call('INCRBYFLOAT', KEYS[7], tostring(units - old))
  redis.call('EXPIRE', KEYS[7], 172800)
  redis.call('EXPIRE', KEYS[8], 172800)
end

-- Frees the leases nobody refreshed in time. Their tasks may have rendered and been billed: the reservation is
-- counted as spent, unless the lease was charged already (a release that arrives later corrects it).
local function sweep(now)
  local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  for _, lease in ipairs(stale) do
    local reserved = tonumber(redis.call('HGET', KEYS[4], lease) or '0')
    if reserved > 0 and redis.call('HEXISTS', KEYS[8], lease) == 0 then charge(lease, reserved) end
    forget(lease)
  end
  return #stale
end

local function retire(lease, now)
  redis.call('ZADD', KEYS[11], now, lease)
end

local function reserved_units()
  local total = 0
  for _, units in ipairs(redis.call('HVALS', KEYS[4])) do total = total + tonumber(units) end
  return total
end
"""

ADMIT: Final = (
    _PRELUDE
    + """
-- ARGV: lease, project, host, units, slots, cap ('' for none), ttl_ms
local lease, units, slots, ttl = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[7])
local now = now_ms()
sweep(now)
redis.call('ZREMRANGEBYSCORE', KEYS[11], '-inf', now - ttl)
redis.call('SET', KEYS[9], ARGV[5])
redis.call('SET', KEYS[10], ARGV[6])
local in_use = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], lease) then
  -- asked again because the first answer was lost on the way: it is the same lease, taken once
  redis.call('ZADD', KEYS[1], now + ttl, lease)
  return {'admitted', in_use, '0', ''}
end
local cooling = redis.call('PTTL', KEYS[6])
if cooling > 0 then return {'cooling', in_use, tostring(cooling), ''} end
if in_use >= slots then return {'full', in_use, '0', ''} end
if ARGV[6] ~= '' then
  local left = tonumber(ARGV[6]) - tonumber(redis.call('GET', KEYS[7]) or '0') - reserved_units()
  if units > left then return {'over_cap', in_use, '0', tostring(left)} end
end
take(lease, ARGV[2], ARGV[3], ARGV[4], now, ttl)
return {'admitted', in_use + 1, '0', ''}
"""
)

BIND: Final = (
    _PRELUDE
    + """
-- ARGV: old key (the external id), new key (the task id), project, host, units, ttl_ms. Returns 1 when the lease
-- was re-keyed, 0 when it had lapsed: the task exists all the same, so it holds a slot again (beyond the limit).
local old, new, ttl = ARGV[1], ARGV[2], tonumber(ARGV[6])
local now = now_ms()
if old == new or not redis.call('ZSCORE', KEYS[1], old) then
  if redis.call('ZSCORE', KEYS[1], new) then
    redis.call('ZADD', KEYS[1], now + ttl, new)
  else
    take(new, ARGV[3], ARGV[4], ARGV[5], now, ttl)
  end
  return old == new and 1 or 0
end
for i = 2, 5 do
  local value = redis.call('HGET', KEYS[i], old)
  if value then redis.call('HSET', KEYS[i], new, value) end
end
local charged = redis.call('HGET', KEYS[8], old)
if charged then
  redis.call('HSET', KEYS[8], new, charged)
  redis.call('HDEL', KEYS[8], old)
end
forget(old)
retire(old, now)
redis.call('ZADD', KEYS[1], now + ttl, new)
return 1
"""
)

REFRESH: Final = (
    _PRELUDE
    + """
-- ARGV: project, host, ttl_ms, key... Each key's lease lives ttl_ms more. A lease that is gone (Redis restarted
-- empty, or it lapsed while Redis was away) belongs to a task still followed, so it is taken again, beyond the
-- limit if need be: the provider counts that task whatever Redis says. Not one just released or re-keyed away
-- (retired): this refresh crossed that call on the way. Returns how many were taken again.
local ttl = tonumber(ARGV[3])
local now = now_ms()
local retaken = 0
for i = 4, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  elseif not redis.call('ZSCORE', KEYS[11], ARGV[i]) then
    take(ARGV[i], ARGV[1], ARGV[2], '0', now, ttl)
    retaken = retaken + 1
  end
end
return retaken
"""
)

RELEASE: Final = (
    _PRELUDE
    + """
-- ARGV: key, units charged. The task ended: its slot is free and its reservation becomes what it really cost.
-- Returns 1 when the lease was there, 0 when it had lapsed (the charge is counted all the same, once).
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
forget(ARGV[1])
retire(ARGV[1], now_ms())
charge(ARGV[1], tonumber(ARGV[2]))
return held and 1 or 0
"""
)

COOL_DOWN: Final = """
-- ARGV: ms. Every run waits at least this long before its next admission; a shorter cooldown never cuts a longer
-- one short. Returns the cooldown left, in ms.
local left = redis.call('PTTL', KEYS[6])
local ms = tonumber(ARGV[1])
if left < ms then
  redis.call('SET', KEYS[6], '1', 'PX', ms)
  return ms
end
return left
"""

STATE: Final = (
    _PRELUDE
    + """
-- What ``orchestrator budget`` shows. Sweeps first, as the next admission would.
local now = now_ms()
sweep(now)
return {
  tostring(now),
  redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'),
  redis.call('HGETALL', KEYS[2]),
  redis.call('HGETALL', KEYS[3]),
  redis.call('HGETALL', KEYS[4]),
  redis.call('HGETALL', KEYS[5]),
  tostring(redis.call('PTTL', KEYS[6])),
  redis.call('GET', KEYS[7]) or '0',
  redis.call('GET', KEYS[9]) or '',
  redis.call('GET', KEYS[10]) or '',
}
"""
)
