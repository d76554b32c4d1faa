-- Decides and records every limit of one request, atomically, on Redis' clock.
--
-- KEYS: for each rate scope, its requests cell then its tokens cell; then for
--       each budget, its hash (spent, reserved) then its set of reservations.
-- ARGV: n_rates, tokens, (rpm, tpm) per rate scope (0: no limit),
--       n_budgets, request id, how long a reservation is held (ms),
--       (limit, cost, baseline, ttl seconds) per budget; money in micro-USD.
-- Returns {allowed, scope, dimension (1 requests, 2 tokens, 3 budget),
--          retry_after_us (-1: never), requests limit, remaining, reset_us,
--          tokens limit, remaining, reset_us, budget remaining (-1: none)}.
-- Nothing is written unless everything allows the request (expired
-- reservations are reaped and a missing budget seeded on the way).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local MINUTE = 60000000
local n_rates = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local a, k = 3, 1
local writes = {}
local req = {0, -1, 0}
local tok = {0, -1, 0}
local budget_left = -1

local function snapshot(allowed, scope, dim, wait)
  return {allowed, scope, dim, wait, req[1], req[2], req[3], tok[1], tok[2], tok[3], budget_left}
end

for i = 1, n_rates do
  local limits = {tonumber(ARGV[a]), tonumber(ARGV[a + 1])}
  a = a + 2
  for d = 1, 2 do
    local limit = limits[d]
    local key = KEYS[k]
    k = k + 1
    if limit > 0 then
      local n = 1
      if d == 2 then n = tokens end
      local slot = (d == 1) and req or tok
      if n > limit then
        return snapshot(0, i, d, -1)
      end
      local step = MINUTE / limit
      local tat = tonumber(redis.call('GET', key) or '0')
      if tat < now then tat = now end
      local new = tat + n * step
      local ahead = new - now
      if ahead > MINUTE then
        slot[1], slot[2], slot[3] = limit, 0, ahead - MINUTE
        return snapshot(0, i, d, math.ceil(ahead - MINUTE))
      end
      writes[#writes + 1] = {key, new}
      local remaining = math.floor((MINUTE - ahead) / step)
      if slot[2] < 0 or remaining < slot[2] then
        slot[1], slot[2], slot[3] = limit, remaining, ahead
      end
    end
  end
end

local n_budgets = tonumber(ARGV[a])
local id = ARGV[a + 1]
local held_us = tonumber(ARGV[a + 2]) * 1000
a = a + 3
local holds = {}
for j = 1, n_budgets do
  local limit, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local baseline, ttl = ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  local b, h = KEYS[k], KEYS[k + 1]
  k = k + 2
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', h, '-inf', now)) do
    local amount = tonumber(string.match(member, ':(%d+)$')) or 0
    redis.call('HINCRBY', b, 'reserved', -amount)
    redis.call('ZREM', h, member)
  end
  if redis.call('EXISTS', b) == 0 then
    redis.call('HSET', b, 'spent', baseline, 'reserved', 0)
    redis.call('EXPIRE', b, ttl)
  end
  local spent = tonumber(redis.call('HGET', b, 'spent') or '0')
  local reserved = tonumber(redis.call('HGET', b, 'reserved') or '0')
  local left = limit - spent - reserved - cost
  if left < 0 or (cost == 0 and limit - spent - reserved <= 0) then
    return snapshot(0, j, 3, -1)
  end
  holds[#holds + 1] = {b, h, cost, ttl}
  if budget_left < 0 or left < budget_left then budget_left = left end
end

for _, w in ipairs(writes) do
  redis.call('SET', w[1], string.format('%.0f', w[2]), 'PX', 61000)
end
for _, hold in ipairs(holds) do
  redis.call('HINCRBY', hold[1], 'reserved', hold[3])
  redis.call('ZADD', hold[2], now + held_us, id .. ':' .. hold[3])
  redis.call('EXPIRE', hold[1], hold[4])
  redis.call('EXPIRE', hold[2], hold[4])
end
return snapshot(1, 0, 0, 0)
