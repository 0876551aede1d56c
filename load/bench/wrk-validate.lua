-- wrk script for POST /validate. Modes (first script argument):
--   tokens: cycle through the tokens in TOKENS_FILE (hit path once they are cached)
--   unique: a token never seen before on every request (miss path)
local mode = "tokens"
local tokens = {}
local counter = 0
local salt = ""

function init(args)
  mode = args[1] or "tokens"
  salt = tostring(math.random(1, 1e9)) .. "-" .. tostring(os.time())
  if mode == "tokens" then
    for line in io.lines(os.getenv("TOKENS_FILE")) do tokens[#tokens + 1] = line end
    counter = math.random(1, #tokens)
  end
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  counter = counter + 1
  local token
  if mode == "tokens" then
    token = tokens[(counter % #tokens) + 1]
  else
    token = "bench-miss-" .. salt .. "-" .. counter
  end
  return wrk.format("POST", "/validate", headers, '{"token":"' .. token .. '"}')
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"durationUs":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"statusErrors":%d,"timeouts":%d,' ..
    '"p50":%d,"p95":%d,"p99":%d,"p999":%d,"max":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency:percentile(99.9), latency.max))
end
