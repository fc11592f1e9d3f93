-- One request, repeated: method and body from the environment.
--   BENCH_METHOD  GET or POST (default POST when BENCH_BODY is set, else GET)
--   BENCH_BODY    the JSON body of a POST
local body = os.getenv("BENCH_BODY")
if body == "" then body = nil end
wrk.method = os.getenv("BENCH_METHOD") or (body and "POST" or "GET")
if body then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

-- done(): report.lua, beside this script.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")
