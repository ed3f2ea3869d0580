-- report tiers: members per tier (SPEC §4.3) at this as_of and at the previous report's as_of
-- ($prev_as_of, the latest earlier partition; NULL when there is none), from `member_activity`.
SELECT
    tier,
    count(*) FILTER (WHERE as_of = $as_of) AS members,
    count(*) FILTER (WHERE as_of = $prev_as_of) AS prev_members
FROM member_activity
WHERE community_id = $community AND (as_of = $as_of OR as_of = $prev_as_of)
GROUP BY tier
