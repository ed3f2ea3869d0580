-- wrk script: one canonical event per POST /v1/events request, each with a new event_id.
-- The token comes from $PULSE_BENCH_TOKEN (scripts/bench sets it for pulse serve too).
local token = os.getenv("PULSE_BENCH_TOKEN")
local threads = 0

function setup(thread)
  thread:set("thread_no", threads)
  threads = threads + 1
end

local sent = 0
local prefix
local headers

function init(args)
  prefix = string.format("w%d-%d-", thread_no, os.time())
  headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
end

function request()
  sent = sent + 1
  local body = '{"event_id":"' .. prefix .. sent .. '","source":"bench","community_id":"bench",'
    .. '"member_id":"m' .. (sent % 5000) .. '","event_type":"checkin",'
    .. '"occurred_at":"2026-11-23T09:00:00+08:00"}'
  return wrk.format("POST", "/v1/events", headers, body)
end
