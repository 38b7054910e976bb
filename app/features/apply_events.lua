-- Merge one user's new records into their sorted record string, atomically and idempotently: one merge
-- pass builds the new string from slices of the old one and of the new records, joined once.
-- Several users per call, each merged on its own: one call amortises the script's dispatch and the
-- client's command packing over a group of users, while a group stays small enough that the call is
-- short (Redis runs nothing else meanwhile).
-- K keys per user (ARGV[10]: 2, or 3 with the user directory on): KEYS[K(u-1) + 1] user u's record
-- string; KEYS[K(u-1) + 2] user u's erasure tombstone (absent unless erased); KEYS[K(u-1) + 3] user u's
-- directory entry (app/features/directory.py).
-- ARGV[1] prune-before time (Unix s); ARGV[2] TTL (s); ARGV[3] record size (bytes); ARGV[4] struct
-- format of a record's leading (ts, kind, fingerprint), the kind a single byte just before the
-- fingerprint; ARGV[5] the fingerprint's offset in a record and ARGV[6] its length (bytes); ARGV[7] the
-- purchase kind; ARGV[8] most non-purchase records kept; ARGV[9] most purchases kept; ARGV[10] K;
-- ARGV[10 + u] user u's new records, concatenated, sorted by (ts, fingerprint), no two with one
-- fingerprint; with K = 3, ARGV[10 + users + u] user u's sealed id. The layout is in
-- app/features/records.py.
-- The directory entry is set, with the records' expiry, whenever the user's records are written, and
-- only then: it never outlives them, and events refused for an erased user write none.
-- The fingerprint of the event id is the idempotency key: a new record whose fingerprint a stored
-- record holds is a duplicate when the two records are equal, and a conflict (the event id sent again
-- with another time, type, amount or rating) when they are not; either way nothing is written for it.
-- Returns per user, per new record in the order given: 1 inserted, 0 duplicate, 2 refused (purchases
-- full), 3 refused (the user was erased after the event's time), 4 conflict.
local prune_before, ttl, R, HEAD = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local FP, FP_BYTES, PURCHASE = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local MAX_RECENT, MAX_PURCHASES = tonumber(ARGV[8]), tonumber(ARGV[9])
local INSERTED, DUPLICATE, OVER_CAPACITY, ERASED, CONFLICT = 1, 0, 2, 3, 4
-- Locals, because global lookups dominate tight loops.
local unpack, sub, byte, find = struct.unpack, string.sub, string.byte, string.find
local floor, max = math.floor, math.max
local KIND = FP -- the kind's position (from 1): the byte before the fingerprint

-- Up to this many new records, each fingerprint is searched for in the stored string (string.find runs
-- in C: a few ns per stored record); beyond, one pass over the stored records (about 100 ns per record,
-- measured) finds them all. Either way a call's lookup costs at most about one such pass, whatever the
-- number of new records.
local SEARCH_MAX = 32

-- The stored side of a write. known[j] = i where stored record i holds new record j's fingerprint (at
-- most one does: a fingerprint is stored once; a user's fingerprints may lie at any time, so the whole
-- string is searched). With `count`, also the number of stored purchases, read in the same pass when
-- there is one; without, 0.
local function scan(blob, n, news, m, count)
  local known, purchases = {}, 0
  if n == 0 then return known, purchases end
  if m <= SEARCH_MAX then
    for j = 1, m do
      local first = (j - 1) * R + FP + 1
      local fp, from = sub(news, first, first + FP_BYTES - 1), 1
      while true do
        local at = find(blob, fp, from, true)
        if not at then break end
        -- The bytes may also turn up across fields: only a match at a fingerprint's offset counts.
        if (at - 1) % R == FP then
          known[j] = (at - 1 - FP) / R + 1
          break
        end
        from = at + 1
      end
    end
    if count then
      for offset = KIND, #blob, R do
        if byte(blob, offset) == PURCHASE then purchases = purchases + 1 end
      end
    end
  else
    -- One call per stored record reads its kind and the first two bytes of its fingerprint (the kind
    -- leads the fingerprint for this); only a record whose two bytes begin some new fingerprint has its
    -- whole fingerprint looked up. Measured cheaper than unpacking or cutting out every fingerprint.
    local starts, wanted = {}, {}
    for j = 1, m do
      local first = (j - 1) * R + FP + 1
      local a, b = byte(news, first, first + 1)
      starts[a * 256 + b] = true
      wanted[sub(news, first, first + FP_BYTES - 1)] = j
    end
    for at = KIND, #blob, R do
      local kind, a, b = byte(blob, at, at + 2)
      if count and kind == PURCHASE then purchases = purchases + 1 end
      if starts[a * 256 + b] then
        local j = wanted[sub(blob, at + 1, at + FP_BYTES)]
        if j then known[j] = (at - KIND) / R + 1 end
      end
    end
  end
  return known, purchases
end

-- The usual write: every new record sorts after the last stored one, nothing stored can be pruned
-- (the second record is recent enough, so all after it are), no new record is too old, and the caps are
-- out of reach. The merged string is then the old one followed by the new records: written in one SET
-- without the walk. (Not with APPEND, which would be cheaper in time: Redis grows an appended string
-- greedily, up to twice its length, which would cost up to twice the memory per user.)
local function appends(blob, news, n, m)
  if n + m > math.min(MAX_PURCHASES, MAX_RECENT) then return false end
  local first_ts, _, first_fp = unpack(HEAD, news, 1)
  if first_ts < prune_before then return false end
  if n == 0 then return true end
  local last_ts, _, last_fp = unpack(HEAD, blob, (n - 1) * R + 1)
  if first_ts < last_ts or (first_ts == last_ts and first_fp <= last_fp) then return false end
  -- Nothing stored is pruned when the first non-purchase record after the first record is recent
  -- enough (all after it are later): purchases are kept at any age. Leading purchases are skipped by
  -- their kind byte alone. Checking the second record alone sent every write of a user with an old
  -- purchase (any long-standing customer) through the merge below, which reads each record's time.
  for at = R + KIND, #blob, R do
    if byte(blob, at) ~= PURCHASE then return unpack(HEAD, blob, at - KIND + 1) >= prune_before end
  end
  return true
end

local function merge(key, news)
  local m = #news / R
  local blob = redis.call('GET', key) or ''
  local n = #blob / R
  -- The caps need the counts of stored purchases and other records. A user with fewer records than
  -- either cap, old and new together, can reach neither, so they are not counted: counting as if no
  -- record were a purchase then gives the same outcome (no purchase refused, nothing dropped for the
  -- cap).
  local known, purchases = scan(blob, n, news, m, n + m > math.min(MAX_PURCHASES, MAX_RECENT))
  if next(known) == nil and appends(blob, news, n, m) then
    redis.call('SET', key, blob .. news, 'EX', ttl)
    local inserted = {}
    for j = 1, m do inserted[j] = INSERTED end
    return inserted
  end

  local others = n - purchases

  local function head(i) -- ts, kind, fingerprint of stored record i
    return unpack(HEAD, blob, (i - 1) * R + 1)
  end
  -- The first stored record in lo..hi that sorts after (t, f), where every record before lo sorts before
  -- it and record hi (or hi = n + 1) after it; none sorts equal: f is not stored. Probes unpack inline:
  -- a call would cost as much.
  local function bisect(lo, hi, t, f)
    while lo < hi do
      local mid = floor((lo + hi) / 2)
      local mt, _, mf = unpack(HEAD, blob, (mid - 1) * R + 1)
      if mt < t or (mt == t and mf < f) then lo = mid + 1 else hi = mid end
    end
    return lo
  end
  -- The first stored record from lo on that sorts after (t, f), n + 1 if none: gallop forward from lo,
  -- then bisect, so new records landing close together (the usual case) cost a probe or two.
  local function seek(lo, t, f)
    local hi, step = lo, 1
    while hi <= n do
      local ht, _, hf = unpack(HEAD, blob, (hi - 1) * R + 1)
      if ht > t or (ht == t and hf > f) then break end
      lo, hi, step = hi + 1, hi + step, step * 2
    end
    return bisect(lo, math.min(hi, n + 1), t, f)
  end
  -- The same over all stored records, galloping back from the last: for the first new record. It
  -- usually sorts after all or most of them (events arrive roughly in time order), where one or two
  -- probes find it; galloping forward from the first record takes about twice log2(n).
  local function seek_back(t, f)
    local hi, step = n + 1, 1
    local lo = n
    while lo >= 1 do
      local lt, _, lf = unpack(HEAD, blob, (lo - 1) * R + 1)
      if lt < t or (lt == t and lf < f) then break end -- record lo sorts before: the answer is after it
      hi, step = lo, step * 2
      lo = hi - step
    end
    return bisect(max(lo, 0) + 1, hi, t, f)
  end

  -- Inserted new records, in order: which one (in news), the stored record it precedes, ts, kind.
  local result, added = {}, 0
  local from, at, new_ts, new_kind = {}, {}, {}, {}
  local lo = 1
  for j = 1, m do
    local outcome, i = INSERTED, known[j]
    if i then
      local same = sub(blob, (i - 1) * R + 1, i * R) == sub(news, (j - 1) * R + 1, j * R)
      outcome = same and DUPLICATE or CONFLICT
    else
      local t, k, f = unpack(HEAD, news, (j - 1) * R + 1)
      lo = added == 0 and seek_back(t, f) or seek(lo, t, f)
      if k == PURCHASE then
        if purchases >= MAX_PURCHASES then outcome = OVER_CAPACITY else purchases = purchases + 1 end
      else
        others = others + 1
      end
      if outcome == INSERTED then
        added = added + 1
        from[added], at[added], new_ts[added], new_kind[added] = j, lo, t, k
      end
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
  for j = 1, refused do result[j] = ERASED end
  if refused < m then
    local merged = merge(key, sub(news, refused * R + 1))
    for j = 1, #merged do result[refused + j] = merged[j] end
  end
  return result
end

local K = tonumber(ARGV[10])
local users = #KEYS / K
local replies = {}
for u = 1, users do
  local base = K * (u - 1)
  local result = apply(KEYS[base + 1], KEYS[base + 2], ARGV[10 + u])
  if K == 3 then
    for j = 1, #result do
      if result[j] == INSERTED then
        redis.call('SET', KEYS[base + 3], ARGV[10 + users + u], 'EX', ttl)
        break
      end
    end
  end
  replies[u] = result
end
return replies
