-- kpis: headline numbers in long format (metric, value, prev_value), W against W′ (SPEC §4,
-- listed in the README). Stocks compare as_of with the start of W; flows compare W with W′.
--   members                    current members N (seen, not left, not banned)
--   new_members                members first seen in the window
--   members_left               distinct members with a `leave` in the window
--   active_members             members with at least one active day in the window
--   avg_daily_active_members   member-active-days / window_days (average DAU)
--   stickiness                 avg_daily_active_members / active_members (null when no one was active)
--   posts, comments, likes, solutions   event counts in the window
--   paying_members             distinct members with a purchase in the window
--   revenue_minor:<CUR>        purchases − refunds in minor units, per currency
--   paying_members:<CUR>       distinct purchasers in that currency
--   arppu_minor:<CUR>          revenue_minor / paying_members in that currency (null without payers)
-- test unique: metric
-- Reference: docs/metrics.md#kpis
WITH m AS (
    SELECT s.first_seen_day, s.banned, s.has_left, s.current_at_w_start, w.active_days, w.prev_active_days
    FROM member_state s
    JOIN member_window w ON w.member_id = s.member_id
),
days AS (
    SELECT member_id, day >= $w_start AS in_w, event_type, currency, n, amount_minor
    FROM member_day_types
    WHERE community_id = $community
      AND event_date BETWEEN $wp_scan_from AND $scan_to
      AND day >= $wp_start AND day < $as_of
),
stocks AS (
    SELECT
        sum(CASE WHEN NOT banned AND NOT has_left THEN 1 ELSE 0 END) AS members,
        sum(CASE WHEN current_at_w_start THEN 1 ELSE 0 END) AS prev_members,
        sum(CASE WHEN first_seen_day >= $w_start THEN 1 ELSE 0 END) AS new_members,
        sum(CASE WHEN first_seen_day >= $wp_start AND first_seen_day < $w_start THEN 1 ELSE 0 END) AS prev_new_members,
        sum(CASE WHEN active_days > 0 THEN 1 ELSE 0 END) AS active_members,
        sum(CASE WHEN prev_active_days > 0 THEN 1 ELSE 0 END) AS prev_active_members,
        CAST(sum(active_days) AS DOUBLE) / $window_days AS dau,
        CAST(sum(prev_active_days) AS DOUBLE) / $window_days AS prev_dau
    FROM m
),
activity AS (
    SELECT
        coalesce(sum(CASE WHEN in_w AND event_type = 'post' THEN n END), 0) AS posts,
        coalesce(sum(CASE WHEN NOT in_w AND event_type = 'post' THEN n END), 0) AS prev_posts,
        coalesce(sum(CASE WHEN in_w AND event_type = 'comment' THEN n END), 0) AS comments,
        coalesce(sum(CASE WHEN NOT in_w AND event_type = 'comment' THEN n END), 0) AS prev_comments,
        coalesce(sum(CASE WHEN in_w AND event_type = 'like' THEN n END), 0) AS likes,
        coalesce(sum(CASE WHEN NOT in_w AND event_type = 'like' THEN n END), 0) AS prev_likes,
        coalesce(sum(CASE WHEN in_w AND event_type = 'solution' THEN n END), 0) AS solutions,
        coalesce(sum(CASE WHEN NOT in_w AND event_type = 'solution' THEN n END), 0) AS prev_solutions,
        count(DISTINCT CASE WHEN in_w AND event_type = 'purchase' THEN member_id END) AS payers,
        count(DISTINCT CASE WHEN NOT in_w AND event_type = 'purchase' THEN member_id END) AS prev_payers
    FROM days
),
leavers AS (
    SELECT
        count(DISTINCT CASE WHEN day >= $w_start THEN member_id END) AS members_left,
        count(DISTINCT CASE WHEN day < $w_start THEN member_id END) AS prev_members_left
    FROM membership_events
    WHERE community_id = $community
      AND event_date BETWEEN $wp_scan_from AND $scan_to
      AND event_type = 'leave'
      AND day >= $wp_start AND day < $as_of
),
money AS (
    SELECT
        currency,
        coalesce(sum(CASE WHEN in_w THEN CASE WHEN event_type = 'purchase' THEN amount_minor ELSE -amount_minor END END), 0) AS revenue,
        coalesce(sum(CASE WHEN NOT in_w THEN CASE WHEN event_type = 'purchase' THEN amount_minor ELSE -amount_minor END END), 0) AS prev_revenue,
        count(DISTINCT CASE WHEN in_w AND event_type = 'purchase' THEN member_id END) AS payers,
        count(DISTINCT CASE WHEN NOT in_w AND event_type = 'purchase' THEN member_id END) AS prev_payers
    FROM days
    WHERE event_type IN ('purchase', 'refund') AND currency IS NOT NULL
    GROUP BY currency
),
measures AS (
    SELECT 'members' AS metric, CAST(members AS DOUBLE) AS value, CAST(prev_members AS DOUBLE) AS prev_value FROM stocks
    UNION ALL SELECT 'new_members', new_members, prev_new_members FROM stocks
    UNION ALL SELECT 'members_left', members_left, prev_members_left FROM leavers
    UNION ALL SELECT 'active_members', active_members, prev_active_members FROM stocks
    UNION ALL SELECT 'avg_daily_active_members', dau, prev_dau FROM stocks
    UNION ALL SELECT 'stickiness',
        CASE WHEN active_members = 0 THEN NULL ELSE dau / active_members END,
        CASE WHEN prev_active_members = 0 THEN NULL ELSE prev_dau / prev_active_members END
        FROM stocks
    UNION ALL SELECT 'posts', posts, prev_posts FROM activity
    UNION ALL SELECT 'comments', comments, prev_comments FROM activity
    UNION ALL SELECT 'likes', likes, prev_likes FROM activity
    UNION ALL SELECT 'solutions', solutions, prev_solutions FROM activity
    UNION ALL SELECT 'paying_members', payers, prev_payers FROM activity
    UNION ALL SELECT 'revenue_minor:' || currency, revenue, prev_revenue FROM money
    UNION ALL SELECT 'paying_members:' || currency, payers, prev_payers FROM money
    UNION ALL SELECT 'arppu_minor:' || currency,
        CASE WHEN payers = 0 THEN NULL ELSE CAST(revenue AS DOUBLE) / payers END,
        CASE WHEN prev_payers = 0 THEN NULL ELSE CAST(prev_revenue AS DOUBLE) / prev_payers END
        FROM money
),
final AS (
    SELECT metric, CAST(value AS DOUBLE) AS value, CAST(prev_value AS DOUBLE) AS prev_value
    FROM measures
    WHERE EXISTS (SELECT 1 FROM member_state)
)
SELECT * FROM final ORDER BY metric
