-- report new_contributors: members who are `contributor` (SPEC §4.3) at this as_of and were not
-- at the start of W — tier_transitions, computed in the run, so the first report has them too —
-- most contributions first; prev_tier is the tier at the start of W (null: not yet seen then).
WITH moved AS (
    SELECT unnest(member_ids) AS member_id, from_tier
    FROM tier_transitions
    WHERE community_id = $community AND as_of = $as_of
      AND to_tier = 'contributor' AND (from_tier IS NULL OR from_tier <> 'contributor')
)
SELECT
    a.member_id,
    a.contribution,
    a.participation,
    a.activity_score,
    m.from_tier AS prev_tier
FROM moved m
JOIN member_activity a
  ON a.member_id = m.member_id AND a.community_id = $community AND a.as_of = $as_of
ORDER BY a.contribution DESC, a.activity_score DESC, a.member_id
LIMIT $limit
