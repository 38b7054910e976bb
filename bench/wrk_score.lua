-- Single-user scoring load for wrk:
--   wrk -t1 -c16 -d5s -s bench/wrk_score.lua http://127.0.0.1:8000/score
-- (send one event for user u1 first, or the user is scored as unknown).
wrk.method = "POST"
wrk.body = '{"user_ids": ["u1"]}'
wrk.headers["Content-Type"] = "application/json"
