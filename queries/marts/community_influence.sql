-- community_influence: the seed's community model (SPEC §4.4),
-- Influence = 0.3·S + 0.2·N + 0.2·D + 0.3·R, where S = members seen before as_of (size_total),
-- N = current members (seen, not left, not banned; members), D = share of N active in W
-- (activity_rate), R = share of N with an interaction event in W (participation_rate); D and R
-- are 0 when N = 0. No row for a community with no events before as_of.
-- test unique: size_total
-- Reference: docs/metrics.md#community_influence
WITH counts AS (
    SELECT
        count(*) AS size_total,
        sum(CASE WHEN NOT s.banned AND NOT s.has_left THEN 1 ELSE 0 END) AS members,
        sum(CASE WHEN NOT s.banned AND NOT s.has_left AND w.active_days >= 1 THEN 1 ELSE 0 END) AS active_members,
        sum(CASE WHEN NOT s.banned AND NOT s.has_left AND w.interaction >= 1 THEN 1 ELSE 0 END) AS interacting_members
    FROM member_state s
    JOIN member_window w ON w.member_id = s.member_id
),
rates AS (
    SELECT
        size_total,
        members,
        CASE WHEN members = 0 THEN 0.0 ELSE CAST(active_members AS DOUBLE) / members END AS activity_rate,
        CASE WHEN members = 0 THEN 0.0 ELSE CAST(interacting_members AS DOUBLE) / members END AS participation_rate
    FROM counts
    WHERE size_total > 0
),
final AS (
    SELECT
        size_total,
        members,
        activity_rate,
        participation_rate,
        0.3 * size_total + 0.2 * members + 0.2 * activity_rate + 0.3 * participation_rate AS influence
    FROM rates
)
SELECT * FROM final
