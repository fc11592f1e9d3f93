-- A mixed load for scripts/soak: createTasks (2%, 2 tickets with fresh ticketNos), the
-- list and stats queries a dashboard makes, and stopTasks (5%) of random batches. Every answer must be the
-- envelope with code 0; the others are counted and shown at the end.
local counter = 0
wrong = 0
seen = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id
  math.randomseed(os.time() + thread_id * 7919)
end

local function tickets()
  local t = {}
  for i = 1, 2 do
    counter = counter + 1
    local no = string.format("SOAK-%d-%d-%d", thread_id, os.time(), counter)
    local phone = string.format("139%04d%04d", math.random(0, 9999), math.random(0, 9999))
    t[i] = string.format('{"ticketNo":"%s","phone":"%s","username":"张三","ticketType":"回访","ticketContent":"您好，这是一次压力测试呼叫。"}', no, phone)
  end
  return "[" .. table.concat(t, ",") .. "]"
end

function request()
  local r = math.random(1, 100)
  local path, body
  if r <= 2 then
    path, body = "/api/aicall/createTasks", tickets()
  elseif r <= 45 then
    path, body = "/api/aicall/records/list", '{"callType":"02","pageNum":1,"pageSize":10}'
  elseif r <= 80 then
    path, body = "/api/aicall/calltask/list", '{"pageNum":1,"pageSize":10}'
  elseif r <= 95 then
    path, body = "/api/aicall/stats", '{}'
  else
    path, body = "/api/aicall/stopTasks", string.format('{"batchIds":[%d,%d]}', 10000 + math.random(1, 50000), 10000 + math.random(1, 50000))
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  seen = seen + 1
  if status ~= 200 or not string.find(body, '"code":0', 1, true) then
    wrong = wrong + 1
    if wrong <= 5 then
      io.stderr:write("wrong answer: ", status, " ", string.sub(body, 1, 200), "\n")
    end
  end
end

function done(summary, latency, requests)
  local total_wrong, total_seen = 0, 0
  for _, t in ipairs(threads) do
    total_wrong = total_wrong + t:get("wrong")
    total_seen = total_seen + t:get("seen")
  end
  io.write(string.format("checked %d answers, %d wrong\n", total_seen, total_wrong))
end
