-- kpis: headline numbers in long format (metric, value, prev_value), W against W′ (SPEC §4,
-- listed in the README). Stocks compare as_of with the start of W; flows compare W with W′.
--   members                    current members N (seen, not left, not banned)
--   new_members                members first seen in the window
--   members_left               distinct members with a `leave` in the window
--   active_members             members with at least one active day in the window
--   avg_daily_active_members   member-active-days / window_days (average DAU)
--   stickiness                 avg_daily_active_members / active_members (null when no one was active)
--   posts, comments, likes, solutions   event counts in the window
--   purchasers                 distinct members with a purchase in the window
--   revenue_minor:<CUR>        purchases − refunds in minor units, per currency
--   purchasers:<CUR>           distinct purchasers in that currency
--   arppu_minor:<CUR>          revenue_minor / purchasers in that currency (null without purchasers)
-- Paid membership (SPEC §4.9; windows as instants [local midnight starting the first day, local
-- midnight after the last), so W ends at as_of; cancellations are those of all refunds before
-- as_of, except for the paid_members stock at W's start, which sees only earlier events):
--   paid_members               stock: members `paying` at as_of (prev_value: at W's start)
--   new_payers                 members whose first uncancelled purchase starts in the window
--   renewals_due               uncancelled purchases decided (end + grace_days) in the window
--   renewals                   of those, renewed (another uncancelled purchase of the member
--                              with p.start < q.start ≤ p.end + grace_days)
--   renewal_rate               renewals / renewals_due (null when none due)
--   refunds                    refund events in the window
--   refund_rate                refunds / purchase events in the window (null without purchases)
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
paid AS (
    SELECT
        sum(CASE WHEN cutoff_name = 'as_of' AND status = 'paying' THEN 1 ELSE 0 END) AS paid_members,
        sum(CASE WHEN cutoff_name = 'w_start' AND status = 'paying' THEN 1 ELSE 0 END) AS prev_paid_members
    FROM paid_status
),
first_paid AS (
    SELECT member_id, min(start_us) AS first_us
    FROM purchase_terms
    WHERE cancelled_us IS NULL
    GROUP BY member_id
),
new_payers AS (
    SELECT
        sum(CASE WHEN first_us >= $w_start_us AND first_us < $as_of_us THEN 1 ELSE 0 END) AS new_payers,
        sum(CASE WHEN first_us >= $wp_start_us AND first_us < $w_start_us THEN 1 ELSE 0 END) AS prev_new_payers
    FROM first_paid
),
decided AS (
    SELECT
        p.event_id,
        p.source,
        p.end_us + $grace_us >= $w_start_us AS in_w,
        count(q.event_id) > 0 AS renewed
    FROM purchase_terms p
    LEFT JOIN purchase_terms q
      ON q.member_id = p.member_id
     AND q.cancelled_us IS NULL
     AND q.start_us > p.start_us
     AND q.start_us <= p.end_us + $grace_us
    WHERE p.cancelled_us IS NULL
      AND p.end_us + $grace_us >= $wp_start_us
      AND p.end_us + $grace_us < $as_of_us
    GROUP BY p.event_id, p.source, p.end_us
),
renewals AS (
    SELECT
        sum(CASE WHEN in_w THEN 1 ELSE 0 END) AS due,
        sum(CASE WHEN NOT in_w THEN 1 ELSE 0 END) AS prev_due,
        sum(CASE WHEN in_w AND renewed THEN 1 ELSE 0 END) AS renewed,
        sum(CASE WHEN NOT in_w AND renewed THEN 1 ELSE 0 END) AS prev_renewed
    FROM decided
),
payment_flow AS (
    SELECT
        sum(CASE WHEN event_type = 'refund' AND occurred_at >= $w_start_ts THEN 1 ELSE 0 END) AS refunds,
        sum(CASE WHEN event_type = 'refund' AND occurred_at < $w_start_ts THEN 1 ELSE 0 END) AS prev_refunds,
        sum(CASE WHEN event_type = 'purchase' AND occurred_at >= $w_start_ts THEN 1 ELSE 0 END) AS purchases,
        sum(CASE WHEN event_type = 'purchase' AND occurred_at < $w_start_ts THEN 1 ELSE 0 END) AS prev_purchases
    FROM payment_events
    WHERE community_id = $community
      AND event_date BETWEEN $wp_scan_from AND $scan_to
      AND occurred_at >= $wp_start_ts
      AND occurred_at < $as_of_ts
),
-- One row per metric: each source above is read once, its metrics unnested side by side (a
-- CTE read once per metric was computed once per metric: `stocks` joins every member).
measures AS (
    SELECT
        unnest(['members', 'new_members', 'active_members', 'avg_daily_active_members', 'stickiness']) AS metric,
        unnest([
            CAST(members AS DOUBLE), CAST(new_members AS DOUBLE), CAST(active_members AS DOUBLE), dau,
            CASE WHEN active_members = 0 THEN NULL ELSE dau / active_members END
        ]) AS value,
        unnest([
            CAST(prev_members AS DOUBLE), CAST(prev_new_members AS DOUBLE), CAST(prev_active_members AS DOUBLE), prev_dau,
            CASE WHEN prev_active_members = 0 THEN NULL ELSE prev_dau / prev_active_members END
        ]) AS prev_value
    FROM stocks
    UNION ALL SELECT 'members_left', CAST(members_left AS DOUBLE), CAST(prev_members_left AS DOUBLE) FROM leavers
    UNION ALL
    SELECT
        unnest(['posts', 'comments', 'likes', 'solutions', 'purchasers']),
        unnest([
            CAST(posts AS DOUBLE), CAST(comments AS DOUBLE), CAST(likes AS DOUBLE), CAST(solutions AS DOUBLE),
            CAST(payers AS DOUBLE)
        ]),
        unnest([
            CAST(prev_posts AS DOUBLE), CAST(prev_comments AS DOUBLE), CAST(prev_likes AS DOUBLE),
            CAST(prev_solutions AS DOUBLE), CAST(prev_payers AS DOUBLE)
        ])
    FROM activity
    UNION ALL
    SELECT
        unnest(['revenue_minor:' || currency, 'purchasers:' || currency, 'arppu_minor:' || currency]),
        unnest([
            CAST(revenue AS DOUBLE), CAST(payers AS DOUBLE),
            CASE WHEN payers = 0 THEN NULL ELSE CAST(revenue AS DOUBLE) / payers END
        ]),
        unnest([
            CAST(prev_revenue AS DOUBLE), CAST(prev_payers AS DOUBLE),
            CASE WHEN prev_payers = 0 THEN NULL ELSE CAST(prev_revenue AS DOUBLE) / prev_payers END
        ])
    FROM money
    UNION ALL SELECT 'paid_members', coalesce(paid_members, 0), coalesce(prev_paid_members, 0) FROM paid
    UNION ALL SELECT 'new_payers', coalesce(new_payers, 0), coalesce(prev_new_payers, 0) FROM new_payers
    UNION ALL
    SELECT
        unnest(['renewals_due', 'renewals', 'renewal_rate']),
        unnest([
            CAST(coalesce(due, 0) AS DOUBLE), CAST(coalesce(renewed, 0) AS DOUBLE),
            CASE WHEN coalesce(due, 0) = 0 THEN NULL ELSE CAST(renewed AS DOUBLE) / due END
        ]),
        unnest([
            CAST(coalesce(prev_due, 0) AS DOUBLE), CAST(coalesce(prev_renewed, 0) AS DOUBLE),
            CASE WHEN coalesce(prev_due, 0) = 0 THEN NULL ELSE CAST(prev_renewed AS DOUBLE) / prev_due END
        ])
    FROM renewals
    UNION ALL
    SELECT
        unnest(['refunds', 'refund_rate']),
        unnest([
            CAST(coalesce(refunds, 0) AS DOUBLE),
            CASE WHEN coalesce(purchases, 0) = 0 THEN NULL ELSE CAST(refunds AS DOUBLE) / purchases END
        ]),
        unnest([
            CAST(coalesce(prev_refunds, 0) AS DOUBLE),
            CASE WHEN coalesce(prev_purchases, 0) = 0 THEN NULL ELSE CAST(prev_refunds AS DOUBLE) / prev_purchases END
        ])
    FROM payment_flow
),
final AS (
    SELECT metric, CAST(value AS DOUBLE) AS value, CAST(prev_value AS DOUBLE) AS prev_value
    FROM measures
    WHERE EXISTS (SELECT 1 FROM member_state)
)
SELECT * FROM final ORDER BY metric
