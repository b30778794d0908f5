-- wrk script for the saturation runs: sends the workload's request (method,
-- bearer token, body) and prints one JSON line, prefixed BENCH_JSON, with
-- what wrk counted. Settings come from the environment (set by run.sh):
--   BENCH_METHOD  GET or PATCH
--   BENCH_TOKEN   bearer token (sent to every configuration alike)
--   BENCH_BODY    request body (PATCH), with BENCH_CTYPE its content type

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. token
end
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
   wrk.body = body
   wrk.headers["Content-Type"] = os.getenv("BENCH_CTYPE") or "application/json"
end

done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p99":%d,"max":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max))
end
