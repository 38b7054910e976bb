-- Merge one user's new records into their sorted record string, atomically and idempotently: one merge
-- pass builds the new string from slices of the old one and of the new records, joined once.
-- Several users per call, each merged on its own: one call amortises the script's dispatch and the
-- client's command packing over a group of users, while a group stays small enough that the call is
-- short (Redis runs nothing else meanwhile).
-- KEYS[2u - 1]: user u's record string; KEYS[2u]: user u's erasure tombstone (absent unless erased).
-- ARGV[1] prune-before time (Unix s); ARGV[2] TTL (s); ARGV[3] record size (bytes); ARGV[4] struct
-- format of a record's leading (ts, fingerprint, kind), kind a single byte; ARGV[5] the purchase kind;
-- ARGV[6] most non-purchase records kept; ARGV[7] most purchases kept; ARGV[7 + u] user u's new
-- records, concatenated, sorted by (ts, fingerprint), without repeats. The layout is in
-- app/features/records.py.
-- Returns per user, per new record in the order given: 1 inserted, 0 duplicate, 2 refused (purchases
-- full), 3 refused (the user was erased after the event's time).
local prune_before, ttl, R, HEAD = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local PURCHASE, MAX_RECENT, MAX_PURCHASES = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
-- Locals, because global lookups dominate tight loops; the kind is the last byte of the head.
local unpack, sub, byte, floor, max = struct.unpack, string.sub, string.byte, math.floor, math.max
local KIND = struct.size(HEAD)

-- The usual write: every new record sorts after the last stored one, nothing stored can be pruned
-- (the second record is recent enough, so all after it are), no new record is too old, and the caps are
-- out of reach. The merged string is then the old one followed by the new records: written in one SET
-- without the walk. (Not with APPEND, which would be cheaper in time: Redis grows an appended string
-- greedily, up to twice its length, which would cost up to twice the memory per user.)
local function appends(blob, news, n, m)
  if n + m > math.min(MAX_PURCHASES, MAX_RECENT) then return false end
  local first_ts, first_fp = unpack(HEAD, news, 1)
  if first_ts < prune_before then return false end
  if n == 0 then return true end
  local last_ts, last_fp = unpack(HEAD, blob, (n - 1) * R + 1)
  if first_ts < last_ts or (first_ts == last_ts and first_fp <= last_fp) then return false end
  return n == 1 or unpack(HEAD, blob, R + 1) >= prune_before
end

local function merge(key, news)
  local m = #news / R
  local blob = redis.call('GET', key) or ''
  local n = #blob / R
  if appends(blob, news, n, m) then
    redis.call('SET', key, blob .. news, 'EX', ttl)
    local inserted = {}
    for j = 1, m do inserted[j] = 1 end
    return inserted
  end

  -- The caps need the counts of stored purchases and other records: one byte read per stored record,
  -- the one full pass. A user with fewer records than either cap, old and new together, can reach
  -- neither, so the pass is skipped: counting as if no record were a purchase then gives the same
  -- outcome (no purchase refused, nothing dropped for the cap).
  local purchases = 0
  if n + m > math.min(MAX_PURCHASES, MAX_RECENT) then
    for offset = KIND, #blob, R do
      if byte(blob, offset) == PURCHASE then purchases = purchases + 1 end
    end
  end
  local others = n - purchases

  local function head(i) -- ts, fingerprint, kind of stored record i
    return unpack(HEAD, blob, (i - 1) * R + 1)
  end
  -- The first stored record from lo on that does not sort before (t, f), n + 1 if none, and that
  -- record's (ts, fingerprint): gallop from lo, then binary-search, so new records landing close
  -- together (the usual case) cost a probe or two. Probes unpack inline: a call would cost as much.
  local function seek(lo, t, f)
    local hi, step, ht, hf = lo, 1, nil, nil
    while hi <= n do
      ht, hf = unpack(HEAD, blob, (hi - 1) * R + 1)
      if ht > t or (ht == t and hf >= f) then break end
      lo, hi, step = hi + 1, hi + step, step * 2
    end
    if hi > n + 1 then hi = n + 1 end
    while lo < hi do
      local mid = floor((lo + hi) / 2)
      local mt, mf = unpack(HEAD, blob, (mid - 1) * R + 1)
      if mt < t or (mt == t and mf < f) then lo = mid + 1 else hi, ht, hf = mid, mt, mf end
    end
    return lo, ht, hf
  end

  -- Inserted new records, in order: which one (in news), the stored record it precedes, ts, kind.
  local result, added = {}, 0
  local from, at, new_ts, new_kind = {}, {}, {}, {}
  local lo = 1
  for j = 1, m do
    local t, f, k = unpack(HEAD, news, (j - 1) * R + 1)
    local lt, lf
    lo, lt, lf = seek(lo, t, f)
    local outcome = (lo <= n and lt == t and lf == f) and 0 or 1
    if outcome == 1 and k == PURCHASE then
      if purchases >= MAX_PURCHASES then outcome = 2 else purchases = purchases + 1 end
    elseif outcome == 1 then
      others = others + 1
    end
    if outcome == 1 then
      added = added + 1
      from[added], at[added], new_ts[added], new_kind[added] = j, lo, t, k
    end
    result[j] = outcome
  end
  if added == 0 then return result end

  -- Kept: the first record (tenure), the last (recency), every purchase (lifetime features), and the
  -- MAX_RECENT newest non-purchase records not older than prune_before. Each rule drops only records
  -- that more events could never bring back, so the string depends on the set of events alone:
  -- keep(keep(A) + B) == keep(A + B). What is dropped lies in a prefix of the merged order: walk that
  -- record by record, then copy the rest as slices of the old string and of the new records.
  local total, drop = n + added, max(0, others - MAX_RECENT)
  local pieces, count = {}, 0
  local function slice(s, first, last) -- records first..last of s, as one piece
    if first <= last then
      count = count + 1
      pieces[count] = sub(s, (first - 1) * R + 1, last * R)
    end
  end

  local i, j, position, seen_others, run = 1, 1, 0, 0, 1 -- run: first stored record of a kept run
  while i <= n or j <= added do
    local is_new = j <= added and at[j] <= i
    local k = is_new and new_kind[j] or byte(blob, (i - 1) * R + KIND)
    if seen_others >= drop then -- past the cap: the time decides, and from here on it only grows
      local t = is_new and new_ts[j] or head(i)
      if t >= prune_before then break end -- this record and all later ones stay
    end
    position = position + 1
    local keep = position == 1 or position == total or k == PURCHASE
    if k ~= PURCHASE then seen_others = seen_others + 1 end
    if is_new or not keep then slice(blob, run, i - 1) end
    if is_new then
      if keep then slice(news, from[j], from[j]) end
      j, run = j + 1, i
    else
      i = i + 1
      if not keep then run = i end
    end
  end
  while j <= added do
    -- New records adjacent in `news` that go before the same stored record are one slice.
    local last = j
    while last < added and at[last + 1] == at[j] and from[last + 1] == from[last] + 1 do
      last = last + 1
    end
    i = at[j] -- never behind i: a new record is walked before the stored record it precedes
    slice(blob, run, i - 1)
    slice(news, from[j], from[last])
    run, j = i, last + 1
  end
  slice(blob, run, n)
  redis.call('SET', key, table.concat(pieces), 'EX', ttl)
  return result
end

-- The tombstone holds the time up to which the user's events are refused: checked here, in the same
-- atomic call as the write, so no event can slip in between an erasure and its tombstone.
local function apply(key, tombstone, news)
  local erased_through = redis.call('GET', tombstone)
  if not erased_through then return merge(key, news) end
  erased_through = tonumber(erased_through)
  -- Records come sorted by time: the refused ones lead.
  local m, refused = #news / R, 0
  while refused < m and unpack(HEAD, news, refused * R + 1) <= erased_through do refused = refused + 1 end
  local result = {}
  for j = 1, refused do result[j] = 3 end
  if refused < m then
    local merged = merge(key, sub(news, refused * R + 1))
    for j = 1, #merged do result[refused + j] = merged[j] end
  end
  return result
end

local replies = {}
for u = 1, #KEYS / 2 do
  replies[u] = apply(KEYS[2 * u - 1], KEYS[2 * u], ARGV[7 + u])
end
return replies
