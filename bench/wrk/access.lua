-- wrk script for the hot path and its /healthz ceiling.
--   TB_MODE=access  (default) GET /v1/tokens/{id}/access-token, id picked at random per request
--                   from the file TB_IDS (one id a line)
--   TB_MODE=sweep   the same, but the ids in file order (each thread from a random start, or from
--                   line TB_SWEEP_START + 1 when that is set), so a run of more than #ids requests
--                   touches every token (the warm-up)
--   TB_MODE=healthz GET /healthz with the same Authorization header, so the client does the same
--                   work per request in both runs (a fair ceiling)
--   TB_MODE=proxy   GET /v1/proxy/{TB_PROXY_ID}/{TB_PROXY_PATH} (path default `healthz`): a call
--                   through the broker's proxy to the token's API (the JWT needs tokens:proxy); run
--                   with TB_MODE=healthz against the upstream itself for the direct figure
-- TB_JWT: the caller JWT (scope tokens:access; tokens:proxy for TB_MODE=proxy). Requests are
-- formatted once in init(), so the per-request Lua cost is one table lookup.
local mode = os.getenv("TB_MODE") or "access"
local jwt = os.getenv("TB_JWT") or error("TB_JWT is not set")
local headers = { ["Authorization"] = "Bearer " .. jwt }
local reqs = {}

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
  if mode == "healthz" then
    reqs[1] = wrk.format("GET", "/healthz", headers)
  elseif mode == "proxy" then
    local id = os.getenv("TB_PROXY_ID") or error("TB_PROXY_ID is not set")
    local path = os.getenv("TB_PROXY_PATH") or "healthz"
    reqs[1] = wrk.format("GET", "/v1/proxy/" .. id .. "/" .. path, headers)
  else
    local file = os.getenv("TB_IDS") or error("TB_IDS is not set")
    for id in io.lines(file) do
      if id ~= "" then
        reqs[#reqs + 1] = wrk.format("GET", "/v1/tokens/" .. id .. "/access-token", headers)
      end
    end
    if #reqs == 0 then error("no ids in " .. file) end
  end
end

local next_i = nil
local sweep_start = tonumber(os.getenv("TB_SWEEP_START") or "")
function request()
  if mode == "sweep" then
    if next_i == nil and sweep_start ~= nil then next_i = sweep_start % #reqs end
    next_i = ((next_i or math.random(#reqs)) % #reqs) + 1
    return reqs[next_i]
  end
  return reqs[math.random(#reqs)]
end

-- One machine-readable line (latencies in microseconds).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f,"non2xx":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, e.status, e.connect, e.read, e.write, e.timeout))
end
