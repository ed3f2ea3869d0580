-- member_influence: one row per member seen before as_of (SPEC §4.4): reach = distinct other
-- members who commented on, liked, shared or cited the member's content in W;
-- interactions_received = how many such events; pagerank over W's engagement graph
-- (null for members without an edge).
-- test unique: member_id
-- Reference: docs/metrics.md#member_influence
WITH received AS (
    SELECT target AS member_id, count(DISTINCT source) AS reach, sum(weight) AS interactions_received
    FROM pagerank_edges
    GROUP BY target
),
final AS (
    SELECT
        s.member_id,
        coalesce(r.reach, 0) AS reach,
        coalesce(r.interactions_received, 0) AS interactions_received,
        p.pagerank
    FROM member_state s
    LEFT JOIN received r ON r.member_id = s.member_id
    LEFT JOIN pagerank p ON p.member_id = s.member_id
)
SELECT * FROM final ORDER BY member_id
