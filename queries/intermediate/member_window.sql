-- member_window (helper): each seen member's counts over the window W (local days
-- $w_start … $as_of − 1) and W′ (the window before): P, I, C of SPEC §4.1, posts, active days
-- in W and W′, and points with per-day caps (§4.2). For the tiers at the start of W (§4.3 at
-- D − window_days, in member_tiers) also C and posts in W′ and active days in W″ (the window
-- before W′).
-- test unique: member_id
-- The rollup's rows as they are: sums and distinct days need no regrouping. Only the
-- per-day caps of points need a local day's count of a type summed first, over UTC partitions
-- and currencies (a local day can span two UTC partitions, and purchases are split by
-- currency); regrouping every row of the three windows that way was two thirds of this
-- model's time at 100M events.
WITH days AS (
    SELECT member_id, day, event_type, n
    FROM member_day_types
    WHERE community_id = $community
      AND event_date BETWEEN $wpp_scan_from AND $scan_to
      AND day >= $wpp_start AND day < $as_of
),
counts AS (
    SELECT
        member_id,
        sum(CASE WHEN day >= $w_start AND event_type IN ('post', 'attend', 'checkin') THEN n ELSE 0 END) AS participation,
        sum(CASE WHEN day >= $w_start AND event_type IN ('comment', 'like', 'share') THEN n ELSE 0 END) AS interaction,
        sum(CASE WHEN day >= $w_start AND event_type = 'solution' THEN n ELSE 0 END) AS solutions,
        sum(CASE WHEN day >= $w_start AND event_type = 'post' THEN n ELSE 0 END) AS posts,
        sum(CASE WHEN day < $w_start AND event_type = 'solution' THEN n ELSE 0 END) AS prev_solutions,
        sum(CASE WHEN day < $w_start AND event_type = 'post' THEN n ELSE 0 END) AS prev_posts
    FROM days
    WHERE day >= $wp_start
    GROUP BY member_id
),
point_days AS (
    SELECT d.member_id, p.weight, p.daily_cap, sum(d.n) AS n
    FROM days d
    JOIN p_points p ON p.event_type = d.event_type
    WHERE d.day >= $w_start
    GROUP BY d.member_id, d.day, d.event_type, p.weight, p.daily_cap
),
points AS (
    SELECT member_id, sum(CAST(least(n, daily_cap) AS DOUBLE) * weight) AS points
    FROM point_days
    GROUP BY member_id
),
-- Distinct (member, day) pairs first, then plain counts: count(DISTINCT …) per member keeps a
-- set per group and was four times as slow with 1.8M members.
active AS (
    SELECT
        member_id,
        count(CASE WHEN day >= $w_start THEN 1 END) AS active_days,
        count(CASE WHEN day >= $wp_start AND day < $w_start THEN 1 END) AS prev_active_days,
        count(CASE WHEN day < $wp_start THEN 1 END) AS prev_prev_active_days
    FROM (
        SELECT DISTINCT d.member_id, d.day
        FROM days d
        JOIN p_active_types a ON a.event_type = d.event_type
    )
    GROUP BY member_id
),
received AS (
    SELECT
        target_member_id AS member_id,
        sum(CASE WHEN day >= $w_start THEN n ELSE 0 END) AS received,
        sum(CASE WHEN day < $w_start THEN n ELSE 0 END) AS prev_received
    FROM engagement_edges
    WHERE event_type IN ('like', 'share', 'cite')
    GROUP BY target_member_id
),
final AS (
    SELECT
        s.member_id,
        coalesce(c.participation, 0) AS participation,
        coalesce(c.interaction, 0) AS interaction,
        coalesce(r.received, 0) + coalesce(c.solutions, 0) AS contribution,
        coalesce(c.posts, 0) AS posts,
        coalesce(a.active_days, 0) AS active_days,
        coalesce(a.prev_active_days, 0) AS prev_active_days,
        coalesce(r.prev_received, 0) + coalesce(c.prev_solutions, 0) AS prev_contribution,
        coalesce(c.prev_posts, 0) AS prev_posts,
        coalesce(a.prev_prev_active_days, 0) AS prev_prev_active_days,
        coalesce(p.points, 0.0) AS points
    FROM member_state s
    LEFT JOIN counts c ON c.member_id = s.member_id
    LEFT JOIN received r ON r.member_id = s.member_id
    LEFT JOIN active a ON a.member_id = s.member_id
    LEFT JOIN points p ON p.member_id = s.member_id
)
SELECT * FROM final
