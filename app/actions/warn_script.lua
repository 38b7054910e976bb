-- One warning, decided and written atomically: the cool-down, the action's budget and the stream entry.
-- KEYS[1] the user's cool-down key (named by the pseudonym), KEYS[2] the action's budget counter for
-- the day, KEYS[3] the stream. All three share one hash tag, so this also runs on a Redis Cluster.
-- ARGV[1] cool-down seconds, ARGV[2] the action's daily budget (-1: nothing to count), ARGV[3] the
-- counter's lifetime in seconds, ARGV[4] stream length cap, ARGV[5] stream age cap in milliseconds,
-- ARGV[6] how many field/value arguments follow for the message before the action's fields;
-- then those pairs, then the action's pairs (sent when the budget allows it).
-- Returns {0} when the user is cooling down, else {1, entry id, 1 if the action was granted else 0}.

if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return {0}
end

local budget = tonumber(ARGV[2])
local granted = 1
if budget >= 0 then
  if tonumber(redis.call('GET', KEYS[2]) or '0') >= budget then
    granted = 0
  else
    redis.call('INCR', KEYS[2])
    redis.call('EXPIRE', KEYS[2], ARGV[3])
  end
end

local base_end = 6 + tonumber(ARGV[6])
local fields = {}
for i = 7, base_end do
  fields[#fields + 1] = ARGV[i]
end
if granted == 1 then
  for i = base_end + 1, #ARGV do
    fields[#fields + 1] = ARGV[i]
  end
else
  -- Over budget: the warning still goes out, so the CRM knows of the user, without the action.
  for _, item in ipairs({'action', 'none', 'action_kind', '', 'action_params', '{}', 'action_reason', 'budget'}) do
    fields[#fields + 1] = item
  end
end

local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(fields))
-- The age cap: entries older than the cap go, by the stream ids' own clock (Redis's).
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[5])
if oldest > 0 then
  redis.call('XTRIM', KEYS[3], 'MINID', '~', tostring(oldest))
end
return {1, id, granted}
