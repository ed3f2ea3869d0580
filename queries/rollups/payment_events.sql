-- rollup_payment_events: every purchase and refund with its keys, times, product (content_id)
-- and money, so paid membership (SPEC §4.9: what a purchase buys, refund matching, spells,
-- renewals, revenue cohorts) never needs the raw events.
-- Incremental per UTC event_date partition, like rollup_member_day_types.
-- Parameters: $community, $tz, $from_date, $to_date.
SELECT
    event_date,
    member_id,
    event_type,
    event_id,
    source,
    occurred_at,
    received_at,
    content_id,
    amount_minor,
    currency,
    local_date(occurred_at, $tz) AS day
FROM events
WHERE community_id = $community
  AND event_date BETWEEN $from_date AND $to_date
  AND event_type IN ('purchase', 'refund')
