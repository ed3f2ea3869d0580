-- tier_transitions: who moved between tiers over W (SPEC §4.3's tiers at two dates; issue 21).
-- from_tier is each member's tier at the start of W — the tier rules of SPEC §4.3 applied at
-- as_of − window_days to the window before it, computed in this run from this run's data
-- (member_tiers.tier_at_w_start), so it exists on the first run; null for a member first seen
-- in W. to_tier is the member's tier at as_of. One row per (from_tier, to_tier) with the
-- members' count and their ids (sorted). direction orders tiers
-- contributor > active > regular = new > at_risk > dormant > left = banned: `up`, `down`,
-- `held` (same level), `joined` (no tier at the start of W).
-- test unique: from_tier, to_tier
-- test accepted_values: direction = up, down, held, joined
-- Reference: docs/metrics.md#tier_transitions
WITH moves AS (
    SELECT member_id, tier_at_w_start AS from_tier, tier AS to_tier
    FROM member_tiers
),
levels AS (
    SELECT
        member_id,
        from_tier,
        to_tier,
        CASE from_tier
            WHEN 'contributor' THEN 5 WHEN 'active' THEN 4 WHEN 'regular' THEN 3 WHEN 'new' THEN 3
            WHEN 'at_risk' THEN 2 WHEN 'dormant' THEN 1 ELSE 0
        END AS from_level,
        CASE to_tier
            WHEN 'contributor' THEN 5 WHEN 'active' THEN 4 WHEN 'regular' THEN 3 WHEN 'new' THEN 3
            WHEN 'at_risk' THEN 2 WHEN 'dormant' THEN 1 ELSE 0
        END AS to_level
    FROM moves
),
final AS (
    SELECT
        from_tier,
        to_tier,
        CASE
            WHEN from_tier IS NULL THEN 'joined'
            WHEN to_level > from_level THEN 'up'
            WHEN to_level < from_level THEN 'down'
            ELSE 'held'
        END AS direction,
        count(*) AS members,
        -- Sorted after aggregating: an ordered array_agg was 5 s of 6 for 1.8M members.
        array_sort(array_agg(member_id), 'ASC', 'NULLS LAST') AS member_ids
    FROM levels
    GROUP BY from_tier, to_tier, from_level, to_level
)
SELECT * FROM final ORDER BY from_tier NULLS FIRST, to_tier
