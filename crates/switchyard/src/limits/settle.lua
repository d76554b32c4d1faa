-- Settles one request: its tokens cells move by what it really used, and
-- each budget's reservation gives way to the real cost.
--
-- KEYS: the tokens cell of each rate scope with a token limit; then for each
--       budget, its hash then its set of reservations.
-- ARGV: n_tokens, delta (used - reserved tokens), tpm per tokens cell,
--       n_budgets, request id, (reserved, cost) per budget.
local MINUTE = 60000000
local n_tokens = tonumber(ARGV[1])
local delta = tonumber(ARGV[2])
local a, k = 3, 1
for _ = 1, n_tokens do
  local tpm = tonumber(ARGV[a])
  a = a + 1
  local key = KEYS[k]
  k = k + 1
  local tat = tonumber(redis.call('GET', key) or '0')
  if delta ~= 0 and tat > 0 then
    local units = math.min(math.abs(delta), tpm)
    local step = MINUTE / tpm
    local new = tat + units * step
    if delta < 0 then new = math.max(tat - units * step, 0) end
    redis.call('SET', key, string.format('%.0f', new), 'PX', 61000)
  end
end
local n_budgets = tonumber(ARGV[a])
local id = ARGV[a + 1]
a = a + 2
for _ = 1, n_budgets do
  local reserved, cost = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  local b, h = KEYS[k], KEYS[k + 1]
  k = k + 2
  if redis.call('ZREM', h, id .. ':' .. reserved) == 1 then
    redis.call('HINCRBY', b, 'reserved', -tonumber(reserved))
  end
  if cost > 0 then
    redis.call('HINCRBY', b, 'spent', cost)
  end
end
return 1
