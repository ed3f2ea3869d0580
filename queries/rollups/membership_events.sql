-- rollup_membership_events: every join, leave, ban and unban with its times, so membership and
-- ban state "as of D" (SPEC §4.3 rules 1–2, §4.4 N, §4.5 cohorts) never needs the raw events.
-- Incremental per UTC event_date partition, like rollup_member_day_types.
-- Parameters: $community, $tz, $from_date, $to_date.
SELECT
    event_date,
    member_id,
    event_type,
    occurred_at,
    received_at,
    local_date(occurred_at, $tz) AS day
FROM events
WHERE community_id = $community
  AND event_date BETWEEN $from_date AND $to_date
  AND event_type IN ('join', 'leave', 'ban', 'unban')
