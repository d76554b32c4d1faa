-- wrk script: POST a realistic chat body and print one machine-readable result line.
--
-- Usage: wrk ... -s bench/chat.lua URL -- BODY_FILE [json|stream] [API_KEY]
--
-- The request is built once per thread in init() (wrk then sends it as a static
-- request, with no Lua call per request). done() prints
--   WRK_RESULT {"requests":N,"rps":F,"p50_us":N,"p99_us":N,...}
-- which bench/run.sh parses.

function init(args)
  local path, mode, key = args[1], args[2] or "json", args[3]
  local file = assert(io.open(path, "rb"), "cannot open body file " .. tostring(path))
  local body = file:read("*a"):gsub("%s+$", "")
  file:close()
  if mode == "stream" then
    body = body:gsub("^{", '{"stream":true,', 1)
  elseif mode ~= "json" then
    error("mode must be json or stream, not " .. mode)
  end
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
  if key and key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"mean_us":%.1f,"max_us":%d,"bytes":%d,"errors_status":%d,"errors_connect":%d,'
      .. '"errors_read":%d,"errors_write":%d,"errors_timeout":%d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max, summary.bytes,
    e.status, e.connect, e.read, e.write, e.timeout))
end
