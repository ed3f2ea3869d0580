-- wrk script: 500 canonical events per POST /v1/events request (NDJSON). The body is built
-- once: every request sends the same 500 events. The receiver validates, spools and fsyncs
-- each copy in full (duplicates are only dropped when the spool moves into the lake), so the
-- intake work per request is that of 500 new events.
local token = os.getenv("PULSE_BENCH_TOKEN")
local lines = {}
for i = 1, 500 do
  lines[i] = '{"event_id":"b' .. i .. '","source":"bench","community_id":"bench",'
    .. '"member_id":"m' .. (i % 97) .. '","event_type":"comment","content_id":"c' .. i .. '",'
    .. '"parent_id":"p' .. (i % 13) .. '","occurred_at":"2026-11-23T09:00:00+08:00"}'
end
wrk.method = "POST"
wrk.path = "/v1/events"
wrk.body = table.concat(lines, "\n") .. "\n"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/x-ndjson"
