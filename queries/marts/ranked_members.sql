-- ranked_members: the list incentive systems pay out on (SPEC §4.7). Current members (not
-- banned, not left, not in exclude_members) with activity_score > 0, ordered by activity_score
-- desc, points desc, member_id asc (byte order); rank = 1…n; the top `top_n`.
-- test unique: rank
-- test unique: member_id
-- Reference: docs/metrics.md#ranked_members
WITH eligible AS (
    SELECT member_id, activity_score, points, tier
    FROM member_activity
    WHERE tier NOT IN ('banned', 'left')
      AND activity_score > 0
      AND member_id NOT IN (SELECT member_id FROM p_excluded)
),
ranked AS (
    SELECT
        row_number() OVER (ORDER BY activity_score DESC, points DESC, member_id ASC) AS rank,
        member_id,
        activity_score,
        points,
        tier
    FROM eligible
)
SELECT * FROM ranked WHERE rank <= $top_n ORDER BY rank
