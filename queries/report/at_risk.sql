-- report at_risk: members in tier `at_risk` (SPEC §4.3: active on ≥ 8 days in W′, on fewer than
-- half as many in W), the longest silent first, so an operator can reach out today.
SELECT member_id, active_days, points, activity_score, CAST(last_active_at AS BIGINT) AS last_active_us
FROM member_activity
WHERE community_id = $community AND as_of = $as_of AND tier = 'at_risk'
ORDER BY last_active_at NULLS FIRST, member_id
LIMIT $limit
