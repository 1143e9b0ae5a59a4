-- wrk script for the write path: PUT /v1/tokens (save_token, an upsert).
--   TB_MODE=insert (default) every request saves a user never seen before -> 201 Created
--                  (user "w-<TB_RUN>-<thread>-<n>@bench.example")
--   TB_MODE=update every request re-saves one of the TB_USERS seeded users (bench-user-00001 …),
--                  picked at random, with a new access token -> 200 OK
-- TB_JWT: the caller JWT (scope tokens:write).
local mode = os.getenv("TB_MODE") or "insert"
local jwt = os.getenv("TB_JWT") or error("TB_JWT is not set")
local run = os.getenv("TB_RUN") or tostring(os.time())
local users = tonumber(os.getenv("TB_USERS") or "10000")
local headers = {
  ["Authorization"] = "Bearer " .. jwt,
  ["Content-Type"] = "application/json",
}
-- A day from now, in ms since the epoch: saved tokens stay valid for the hot path.
local expiry = (os.time() + 86400) * 1000

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

local n = 0
function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
end

function request()
  n = n + 1
  local user
  if mode == "update" then
    user = string.format("bench-user-%05d@bench.example", math.random(users))
  else
    user = string.format("w-%s-%d-%d@bench.example", run, tid or 0, n)
  end
  local body = string.format(
    '{"user_name":"%s","client_id":"1000.BENCHCLIENT","client_secret":"bench-client-secret-%d",'
      .. '"refresh_token":"1000.r.%s.%d","access_token":"1000.a.%s.%d.%d","expiry_time":%d,'
      .. '"redirect_url":"https://app.example.com/cb","api_domain":"https://www.zohoapis.com"}',
    user, n, run, n, run, tid or 0, n, expiry)
  return wrk.format("PUT", "/v1/tokens", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f,"non2xx":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, e.status, e.connect, e.read, e.write, e.timeout))
end
