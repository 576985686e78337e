-- wrk script of bench/share_http.py: replays varied share requests and counts what came back.
--
--   wrk -t1 -c16 -d20s --latency -s bench/share_http.lua http://127.0.0.1:PORT -- requests.tsv
--
-- requests.tsv holds one request a line: path TAB bearer token TAB JSON body. Each connection starts
-- at its own place in the list, so the connections do not send the same request at the same time.
-- done() prints one JSON line: requests, seconds, socket errors, latency percentiles (microseconds),
-- answers per status and the recipient results of the 200 answers ("allowed":true / false).

-- Globals, not locals: done() reads them from each thread with thread:get().
requests = {}
counter = 0
statuses = {}
allowed = 0
refused = 0
timeouts = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = args[1]
  for line in io.lines(file) do
    local path, token, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    if path then
      local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
      table.insert(requests, wrk.format("POST", path, headers, body))
    end
  end
  if #requests == 0 then
    error("no requests in " .. tostring(file))
  end
  -- A different starting point per thread (wrk seeds nothing itself).
  math.randomseed(os.time() + #threads * 7919 + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
  counter = math.random(#requests)
end

function request()
  counter = counter % #requests + 1
  return requests[counter]
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status == 200 and body then
    for _ in body:gmatch('"allowed":true') do allowed = allowed + 1 end
    for _ in body:gmatch('"allowed":false') do refused = refused + 1 end
  end
  if body and body:find("engine_timeout", 1, true) then
    timeouts = timeouts + 1  -- the engine failed closed: a refusal that says nothing of the policy
  end
end

local function json_string(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, _)
  local merged = {}
  local ok, no, late = 0, 0, 0
  for _, thread in ipairs(threads) do
    local counted = thread:get("statuses") or {}
    for status, n in pairs(counted) do
      merged[status] = (merged[status] or 0) + n
    end
    ok = ok + (thread:get("allowed") or 0)
    no = no + (thread:get("refused") or 0)
    late = late + (thread:get("timeouts") or 0)
  end
  local parts = {}
  for status, n in pairs(merged) do
    table.insert(parts, json_string(status) .. ":" .. n)
  end
  local errors = summary.errors
  io.write(string.format(
    '\nWRK-RESULT {"requests":%d,"seconds":%.6f,"statuses":{%s},"allowed":%d,"refused":%d,"engineTimeouts":%d,' ..
    '"socketErrors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
    '"latencyUs":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration / 1e6, table.concat(parts, ","), ok, no, late,
    errors.connect, errors.read, errors.write, errors.timeout, errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
