-- Insert one user's events into their sorted record string, atomically and idempotently.
-- KEYS[1]: the user's record string. ARGV[1]: prune-before time (Unix s). ARGV[2]: TTL (s).
-- ARGV[3..]: 14-byte records (ts u32, fingerprint u32, kind u8, rating u8, cents i32; big-endian).
-- Records stay sorted by (ts, fingerprint), so the string depends only on the set of events,
-- not on the order they arrived in. Returns 1 (inserted) or 0 (duplicate) per record.
local R = 14
local PURCHASE = 4
local blob = redis.call('GET', KEYS[1]) or ''
local n = #blob / R
local result = {}
local changed = false

for i = 3, #ARGV do
  local record = ARGV[i]
  local ts, fp = struct.unpack('>I4>I4', record)
  local lo, hi = 0, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local mts, mfp = struct.unpack('>I4>I4', blob, mid * R + 1)
    if mts < ts or (mts == ts and mfp < fp) then lo = mid + 1 else hi = mid end
  end
  local duplicate = false
  if lo < n then
    local mts, mfp = struct.unpack('>I4>I4', blob, lo * R + 1)
    duplicate = (mts == ts and mfp == fp)
  end
  if duplicate then
    result[#result + 1] = 0
  else
    blob = string.sub(blob, 1, lo * R) .. record .. string.sub(blob, lo * R + 1)
    n = n + 1
    changed = true
    result[#result + 1] = 1
  end
end

if changed then
  -- Records older than every window matter only as purchases (lifetime features), as the first
  -- record (tenure) or as the last one (recency); the rest are dropped to keep the string small.
  -- A dropped record is neither first nor last, and never can be again: the set only grows.
  local prune_before = tonumber(ARGV[1])
  local kept = { string.sub(blob, 1, R) }
  local i = 1
  while i < n - 1 do
    local ts, _, kind = struct.unpack('>I4>I4B', blob, i * R + 1)
    if ts >= prune_before then break end
    if kind == PURCHASE then kept[#kept + 1] = string.sub(blob, i * R + 1, (i + 1) * R) end
    i = i + 1
  end
  kept[#kept + 1] = string.sub(blob, i * R + 1)
  redis.call('SET', KEYS[1], table.concat(kept), 'EX', tonumber(ARGV[2]))
end
return result
