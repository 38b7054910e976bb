-- POST /events load for wrk: every request carries new events with unique ids, so the store inserts
-- them (a resent id would only count as a duplicate). Times are "now", within any allowed lateness.
--   wrk -t1 -c32 -d10s -s bench/wrk_events.lua http://127.0.0.1:8000/events -- users.txt TAG 100
-- users.txt: user ids, one per line; TAG: unique per run (ids are TAG-request-index); 100: events per
-- request. At the end it prints one line "WRK_JSON {...}" (microseconds).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- The API key, when bench/serve.py started this (or export CHURN_BENCH_AUTHORIZATION="Bearer <key>").
wrk.headers["Authorization"] = os.getenv("CHURN_BENCH_AUTHORIZATION")

local users = {}
local tag = "w"
local per_request = 100
local counter = 0
local kinds = {
   '"type":"page_view"', '"type":"page_view"', '"type":"session_start"', '"type":"add_to_cart"',
   '"type":"purchase","amount":42.5,"items":1', '"type":"review","rating":4',
}

function init(args)
   for line in io.lines(args[1]) do
      if #line > 0 then
         users[#users + 1] = line
      end
   end
   tag = args[2] or tag
   per_request = tonumber(args[3] or per_request)
   math.randomseed(os.time())
end

function request()
   counter = counter + 1
   local ts = os.date("!%Y-%m-%dT%H:%M:%SZ")
   local parts = {}
   for k = 1, per_request do
      parts[k] = string.format('{"event_id":"%s-%d-%d","user_id":"%s","ts":"%s",%s}', tag, counter, k,
         users[math.random(#users)], ts, kinds[k % #kinds + 1])
   end
   return wrk.format(nil, nil, nil, '{"events":[' .. table.concat(parts, ",") .. ']}')
end

-- done() lives beside this script, found from this file's own path so any working directory works.
dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "wrk_summary.lua")
