-- rollup_member_day_types: per member, local day, event type and currency — how many events,
-- the first and last time, and the summed amount. Every windowed metric (SPEC §4.1–§4.5, kpis)
-- reads this rollup instead of raw events, so a run's cost follows the window, not the history.
-- Incremental: computed per UTC event_date partition of `events`, and recomputed only for
-- partitions whose event files changed (late events included).
-- Parameters: $community, $tz (IANA zone for local days), $from_date, $to_date (UTC partitions).
SELECT
    event_date,
    member_id,
    local_date(occurred_at, $tz) AS day,
    event_type,
    currency,
    count(*) AS n,
    min(occurred_at) AS first_at,
    max(occurred_at) AS last_at,
    sum(amount_minor) AS amount_minor
FROM events
WHERE community_id = $community
  AND event_date BETWEEN $from_date AND $to_date
GROUP BY event_date, member_id, local_date(occurred_at, $tz), event_type, currency
