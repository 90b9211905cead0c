-- wrk request mix for bench/run_serve_bench.sh: POST /v1/recommend for random users (ids 1..USERS,
-- k 10), with one request in 20 bad (an unknown user: 404 from both servers).
local users = tonumber(os.getenv("USERS") or "1000")
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  counter = counter + 1
  local user
  if counter % 20 == 0 then
    user = "no-such-user"
  else
    user = tostring(math.random(1, users))
  end
  return wrk.format(nil, "/v1/recommend", nil, '{"user_id": "' .. user .. '", "k": 10}')
end

done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, ' ..
    '"errors_connect": %d, "errors_read": %d, "errors_timeout": %d, "non_2xx": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect, summary.errors.read, summary.errors.timeout, summary.errors.status))
end
