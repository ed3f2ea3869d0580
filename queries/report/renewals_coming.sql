-- report renewals_coming: "renewals coming up" (SPEC §4.9): `paying` members with days_left <
-- horizon_days, soonest first, with whether they were active in W — the members to call
-- before they lapse.
SELECT
    member_id,
    days_left,
    CAST(paid_until AS BIGINT) AS paid_until_us,
    active_days,
    active_days > 0 AS active
FROM membership
WHERE community_id = $community AND as_of = $as_of
  AND status = 'paying' AND days_left < $horizon_days
ORDER BY days_left, paid_until, member_id
LIMIT $limit
