-- wrk script for bench/run.py: POSTs BENCH_BODY with BENCH_HEADERS; with
-- BENCH_SESSIONS > 0 each request carries x-session-id of one of that many
-- sessions. Prints one JSON line with throughput and latency percentiles (µs).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["content-type"] = "application/json"
local sessions = tonumber(os.getenv("BENCH_SESSIONS") or "0")
-- BENCH_HEADERS is a flat JSON object of strings: {"a":"b",...}
for k, v in string.gmatch(os.getenv("BENCH_HEADERS") or "{}", '"([^"]+)"%s*:%s*"([^"]*)"') do
  wrk.headers[k] = v
end

request = function()
  if sessions > 0 then
    wrk.headers["x-session-id"] = "bench-" .. math.random(sessions)
  end
  return wrk.format()
end

local non2xx = 0
response = function(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50":%d,"p99":%d,"p999":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, non2xx,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
