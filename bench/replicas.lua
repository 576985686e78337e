-- wrk script of bench/replicas.py: bench/share_http.lua as it is, plus the latency histogram.
--
--   wrk -t1 -c6 -d10s --latency -s bench/replicas.lua http://127.0.0.1:PORT -- requests.tsv
--
-- With three replicas the bench runs one wrk per replica at the same time; percentiles of three wrk
-- runs cannot be combined, their histograms can. After share_http.lua's WRK-RESULT line, done() prints
-- one more: WRK-HISTOGRAM [[microseconds, count], ...], every distinct latency wrk recorded (the
-- percentiles computed from it are wrk's own: latency:percentile reads the same buckets).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "share_http.lua")

local share_done = done

function done(summary, latency, requests)
  share_done(summary, latency, requests)
  local parts = {}
  for i = 1, #latency do
    local value, count = latency(i)
    parts[i] = string.format("[%d,%d]", value, count)
  end
  io.write("WRK-HISTOGRAM [" .. table.concat(parts, ",") .. "]\n")
end
