-- wrk request mix for bench/run_serve_bench.sh: POST /v1/recommend for random users (ids 1..USERS,
-- k 10), with one request in 20 bad (an unknown user: 404 from both servers).
-- MEAN_DELAY_MS > 0 paces each connection (an open-loop stand-in, since Debian has no wrk2): before
-- each request it waits an exponentially distributed time of that mean, so N connections offer
-- about N * 1000 / MEAN_DELAY_MS requests/s while the server keeps up. wrk's delay() takes whole
-- milliseconds, so the wait is rounded up or down at random, keeping its mean.
local users = tonumber(os.getenv("USERS") or "1000")
local mean_delay = tonumber(os.getenv("MEAN_DELAY_MS") or "0")
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

if mean_delay > 0 then
  delay = function()
    local wait = -mean_delay * math.log(1 - math.random())
    local whole = math.floor(wait)
    if math.random() < wait - whole then whole = whole + 1 end
    return whole
  end
end

done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, ' ..
    '"errors_connect": %d, "errors_read": %d, "errors_timeout": %d, "non_2xx": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect, summary.errors.read, summary.errors.timeout, summary.errors.status))
end
