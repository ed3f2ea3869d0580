-- report slipped: members who were `contributor` or `active` (SPEC §4.3) at the start of W and
-- are in a lower tier at this as_of (tier_transitions, direction `down`) — the people to call
-- first; the highest former tier, then the fewest active days of W, first.
WITH moved AS (
    SELECT unnest(member_ids) AS member_id, from_tier, to_tier
    FROM tier_transitions
    WHERE community_id = $community AND as_of = $as_of
      AND direction = 'down' AND from_tier IN ('contributor', 'active')
)
SELECT
    m.member_id,
    m.from_tier,
    m.to_tier,
    a.active_days,
    CAST(a.last_active_at AS BIGINT) AS last_active_us
FROM moved m
JOIN member_activity a
  ON a.member_id = m.member_id AND a.community_id = $community AND a.as_of = $as_of
ORDER BY CASE m.from_tier WHEN 'contributor' THEN 0 ELSE 1 END, a.active_days, m.member_id
LIMIT $limit
