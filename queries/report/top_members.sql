-- report top_members: the head of `ranked_members` (SPEC §4.7) with each member's activity
-- components P, I, C, R (SPEC §4.1) from `member_activity`, by rank. The ranked-list sinks
-- (SPEC §7 `[[sinks]]`) deliver the same rows, all of them.
SELECT
    r.rank,
    r.member_id,
    r.activity_score,
    r.points,
    r.tier,
    a.participation,
    a.interaction,
    a.contribution,
    a.retention,
    a.active_days,
    r.community_id,
    r.as_of
FROM ranked_members r
JOIN member_activity a
  ON a.member_id = r.member_id AND a.community_id = r.community_id AND a.as_of = r.as_of
WHERE r.community_id = $community AND r.as_of = $as_of
ORDER BY r.rank
LIMIT $limit
