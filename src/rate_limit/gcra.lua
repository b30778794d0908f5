-- GCRA for one key, on Redis's own clock (see src/rate_limit/redis_store.rs).
-- KEYS[1]: the key; ARGV[1]: emission interval (µs); ARGV[2]: burst.
-- The key holds the theoretical arrival time (µs since the epoch) and
-- expires when the bucket is full again.
-- Returns {1, remaining} when allowed, {0, wait_us} when not.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tau = interval * (burst - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
if now < tat - tau then
  return {0, tat - tau - now}
end
local new_tat = tat + interval
local remaining = math.floor(math.min(now + interval + tau - new_tat, tau) / interval)
-- %d: numbers this large would lose digits in Lua's default formatting.
redis.call('SET', KEYS[1], string.format('%d', new_tat),
  'PX', string.format('%d', math.ceil((new_tat - now) / 1000)))
return {1, remaining}
