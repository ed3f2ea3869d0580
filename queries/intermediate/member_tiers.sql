-- member_tiers (helper): each seen member's tier (SPEC §4.3, the first rule that matches wins)
-- at as_of over W, and at the start of W — the tier a run at as_of − window_days computes, over
-- the window before W (W′, with W″ before it for `at_risk`): banned and left as of W's start,
-- C and posts in W′ (engagement resolved as that run resolves it, engagement_edges), first seen
-- in W′. tier_at_w_start is null for a member first seen in W. The rules are written once and
-- applied to both dates' inputs, so the two tiers cannot drift apart.
-- Read by member_activity (tier) and tier_transitions (both).
-- test unique: member_id
-- test accepted_values: tier = banned, left, contributor, active, new, at_risk, dormant, regular
-- test accepted_values: tier_at_w_start = banned, left, contributor, active, new, at_risk, dormant, regular
WITH inputs AS (
    SELECT
        s.member_id,
        true AS at_as_of,
        s.banned,
        s.has_left,
        w.contribution,
        w.posts,
        w.active_days,
        s.first_seen_day >= $w_start AS first_seen_in_window,
        w.prev_active_days
    FROM member_state s
    JOIN member_window w ON w.member_id = s.member_id
    UNION ALL
    SELECT
        s.member_id,
        false AS at_as_of,
        s.banned_at_w_start,
        s.left_at_w_start,
        w.prev_contribution,
        w.prev_posts,
        w.prev_active_days,
        s.first_seen_day >= $wp_start,
        w.prev_prev_active_days
    FROM member_state s
    JOIN member_window w ON w.member_id = s.member_id
    WHERE s.first_seen_day < $w_start
),
tiered AS (
    SELECT
        member_id,
        at_as_of,
        CASE
            WHEN banned THEN 'banned'
            WHEN has_left THEN 'left'
            WHEN contribution >= $contributor_min_contribution AND posts >= 1 THEN 'contributor'
            WHEN active_days >= $active_min_days THEN 'active'
            WHEN first_seen_in_window THEN 'new'
            WHEN prev_active_days >= $at_risk_prev_min_days AND active_days * 2 < prev_active_days THEN 'at_risk'
            WHEN active_days = 0 THEN 'dormant'
            ELSE 'regular'
        END AS tier
    FROM inputs
),
final AS (
    SELECT
        member_id,
        max(CASE WHEN at_as_of THEN tier END) AS tier,
        max(CASE WHEN NOT at_as_of THEN tier END) AS tier_at_w_start
    FROM tiered
    GROUP BY member_id
)
SELECT * FROM final
