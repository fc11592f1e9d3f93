-- createTasks with BENCH_TICKETS (default 1000) tickets per request, every ticketNo unique:
-- BENCH_PREFIX (unique per run) .. thread .. request .. index. Phones end in 1, so
-- none is a sim test number (…4860 busy, …4800 no answer, …4040, …5030).
local per_request = tonumber(os.getenv("BENCH_TICKETS") or "1000")
local prefix = os.getenv("BENCH_PREFIX") or tostring(os.time())
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local n = 0
function request()
  n = n + 1
  local t = {}
  for i = 1, per_request do
    local seq = (n * per_request + i) % 100000000
    t[i] = string.format(
      '{"ticketNo":"%s-%d-%d-%d","phone":"13%08d1","username":"张三","ticketType":"活动通知",' ..
      '"ticketContent":"尊敬的客户，提醒您参加我们本周末的线下优惠活动。"}',
      prefix, tid, n, i, (seq * 7919 + tid) % 100000000)
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, "[" .. table.concat(t, ",") .. "]")
end

-- done(): report.lua, beside this script.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")
