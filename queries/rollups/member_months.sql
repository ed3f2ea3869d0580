-- rollup_member_months: per member and local month, the first event (instant and local day)
-- and the last active event (the community's active types, SPEC §4.1), so the whole-history
-- reads — member_state's first seen and last active (§4.1) and retention_cohorts' active months
-- (§4.5) — take one row per member and month instead of one per member, day and event type
-- (a sixth as many at 100M events). A change of the active types recomputes it (they are part
-- of its fingerprint, see models::rollups).
-- Incremental per UTC month like the other rollups; rows carry no event_date, and a local
-- month near a UTC month's edge has rows in two partitions, combined when read.
-- Parameters: $community, $tz, $from_date, $to_date; the table p_active_types.
WITH days AS (
    SELECT e.member_id, local_date(e.occurred_at, $tz) AS day, e.occurred_at, a.event_type AS active_type
    FROM events e
    LEFT JOIN p_active_types a ON a.event_type = e.event_type
    WHERE e.community_id = $community
      AND e.event_date BETWEEN $from_date AND $to_date
)
SELECT
    member_id,
    period_start(day, 'month') AS month,
    min(occurred_at) AS first_at,
    min(day) AS first_day,
    max(CASE WHEN active_type IS NOT NULL THEN occurred_at END) AS last_active_at
FROM days
GROUP BY member_id, period_start(day, 'month')
