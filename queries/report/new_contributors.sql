-- report new_contributors: members whose tier (SPEC §4.3) is `contributor` at this as_of and was
-- not at the previous report's as_of ($prev_as_of; with no earlier report, every contributor is
-- new), most contributions first.
SELECT
    now.member_id,
    now.contribution,
    now.participation,
    now.activity_score,
    before.tier AS prev_tier
FROM member_activity now
LEFT JOIN member_activity before
  ON before.member_id = now.member_id
 AND before.community_id = $community
 AND before.as_of = $prev_as_of
WHERE now.community_id = $community
  AND now.as_of = $as_of
  AND now.tier = 'contributor'
  AND (before.tier IS NULL OR before.tier <> 'contributor')
ORDER BY now.contribution DESC, now.activity_score DESC, now.member_id
LIMIT $limit
