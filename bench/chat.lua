-- wrk script: POST a realistic chat body and print one machine-readable result line.
--
-- Usage: wrk ... -s bench/chat.lua URL -- BODY_FILE [json|stream] [API_KEY] [VARY_TAG]
--
-- The request is built once per thread in init() (wrk then sends it as a static
-- request, with no Lua call per request). With VARY_TAG, every request differs
-- instead: the last user message ends in " (VARY_TAG T-NNNNNNNNNN)", T the wrk
-- thread and N a counter, so no two requests of the run (nor of runs with other
-- tags) share a body — what a response cache must miss. That request is built
-- once too, split around the fixed-width counter, so the Lua call per request
-- only joins three strings (the Content-Length never changes). done() prints
--   WRK_RESULT {"requests":N,"rps":F,"p50_us":N,"p99_us":N,...}
-- which bench/run.sh parses.

-- Threads number themselves in setup(), for VARY_TAG bodies unique across threads.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

-- `body` split at the end of its last user message's text: the part before the
-- closing quote and the rest (the payload's message objects start with "role").
local function split_last_user_text(body)
  local from, text_start = 1, nil
  while true do
    local _, e = body:find('"role":"user","content":"', from, true)
    if not e then break end
    text_start, from = e + 1, e + 1
  end
  assert(text_start, 'VARY_TAG needs a body with a {"role":"user","content":"..."} message')
  local i = text_start
  while true do
    local c = body:sub(i, i)
    if c == '"' then break end
    assert(c ~= "", "unterminated string in the body")
    i = i + (c == "\\" and 2 or 1)
  end
  return body:sub(1, i - 1), body:sub(i)
end

-- Each request of the run: the static one's text around a counter that grows by one.
local function varying_requests(tag)
  assert(not tag:find('["\\%c]'), "VARY_TAG must not need escaping in JSON")
  local width, marker = 10, "@@@@@@@@@@"
  local before, after = split_last_user_text(wrk.body)
  wrk.body = before .. " (" .. tag .. " " .. (thread_number or 1) .. "-" .. marker .. ")" .. after
  local template = wrk.format()
  local s, e = template:find(marker, 1, true)
  local head, tail = template:sub(1, s - 1), template:sub(e + 1)
  local n = 10 ^ width -- its digits after the first are the counter: always `width` wide
  return function()
    n = n + 1
    return head .. tostring(n):sub(2) .. tail
  end
end

function init(args)
  local path, mode, key, vary = args[1], args[2] or "json", args[3], args[4]
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
  if vary and vary ~= "" then
    -- wrk looks for a global request() after init(): defined only here, the
    -- static requests stay static.
    request = varying_requests(vary)
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
