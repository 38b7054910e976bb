-- Scoring load for wrk. Without arguments, single-user /score requests for user u1 against `make run`:
--   wrk -t1 -c16 -d5s -s bench/wrk_score.lua http://127.0.0.1:8000/score
-- (send one event for user u1 first, or the user is scored as unknown).
-- With a file of request bodies, one JSON body per line, it cycles through them (bench/serve.py does):
--   wrk -t1 -c32 -d10s -s bench/wrk_score.lua http://127.0.0.1:8000/score -- bodies.jsonl
-- At the end it prints one line "WRK_JSON {...}" with the counts and latency percentiles (microseconds).
wrk.method = "POST"
wrk.body = '{"user_ids": ["u1"]}'
wrk.headers["Content-Type"] = "application/json"
-- The API key, when bench/serve.py started this (or export CHURN_BENCH_AUTHORIZATION="Bearer <key>").
wrk.headers["Authorization"] = os.getenv("CHURN_BENCH_AUTHORIZATION")

local requests = {}
local next_index = 1

function init(args)
   if args[1] == nil then
      return
   end
   -- Encode every request once, so the generator's per-request work is a table lookup.
   for line in io.lines(args[1]) do
      if #line > 0 then
         requests[#requests + 1] = wrk.format(nil, nil, nil, line)
      end
   end
end

function request()
   if #requests == 0 then
      return wrk.format()
   end
   local r = requests[next_index]
   next_index = next_index % #requests + 1
   return r
end

-- done() lives beside this script, found from this file's own path so any working directory works.
dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "wrk_summary.lua")
