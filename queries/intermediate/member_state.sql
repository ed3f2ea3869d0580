-- member_state (helper): every member seen before as_of (SPEC §3) with first_seen_at, the local
-- day of their first event, their cohort day (first `join`, else first seen; §4.5), whether
-- they are banned (latest ban/unban is `ban`) or left (latest join/leave is `leave`) as of D
-- (§4.3 rules 1–2; ties on occurred_at go to the later received_at, §4.8), and last_active_at
-- (latest active event before as_of, all time; §4.1). `current_at_w_start` says whether the
-- member was a current member (seen, not left, not banned) when W began, for kpis' prev_value.
-- test unique: member_id
WITH days AS (
    SELECT member_id, day, event_type, first_at, last_at
    FROM member_day_types
    WHERE community_id = $community AND day < $as_of
),
seen AS (
    SELECT member_id, min(first_at) AS first_seen_at, min(day) AS first_seen_day
    FROM days
    GROUP BY member_id
),
last_active AS (
    SELECT d.member_id, max(d.last_at) AS last_active_at
    FROM days d
    JOIN p_active_types a ON a.event_type = d.event_type
    GROUP BY d.member_id
),
membership AS (
    SELECT member_id, event_type, occurred_at, received_at, day
    FROM membership_events
    WHERE community_id = $community AND day < $as_of
),
cutoffs AS (
    SELECT 'as_of' AS cutoff_name, $as_of AS cutoff
    UNION ALL
    SELECT 'w_start' AS cutoff_name, $w_start AS cutoff
),
ranked AS (
    SELECT
        c.cutoff_name,
        m.member_id,
        m.event_type,
        row_number() OVER (
            PARTITION BY c.cutoff_name, m.member_id, m.event_type IN ('ban', 'unban')
            ORDER BY m.occurred_at DESC, m.received_at DESC, m.event_type DESC
        ) AS recency
    FROM membership m
    JOIN cutoffs c ON m.day < c.cutoff
),
latest AS (
    SELECT
        member_id,
        max(CASE WHEN cutoff_name = 'as_of' AND event_type IN ('ban', 'unban') THEN event_type END) AS ban_state,
        max(CASE WHEN cutoff_name = 'as_of' AND event_type IN ('join', 'leave') THEN event_type END) AS join_state,
        max(CASE WHEN cutoff_name = 'w_start' AND event_type IN ('ban', 'unban') THEN event_type END) AS prev_ban_state,
        max(CASE WHEN cutoff_name = 'w_start' AND event_type IN ('join', 'leave') THEN event_type END) AS prev_join_state
    FROM ranked
    WHERE recency = 1
    GROUP BY member_id
),
first_join AS (
    SELECT member_id, min(day) AS first_join_day
    FROM membership
    WHERE event_type = 'join'
    GROUP BY member_id
),
final AS (
    SELECT
        s.member_id,
        s.first_seen_at,
        s.first_seen_day,
        coalesce(j.first_join_day, s.first_seen_day) AS cohort_day,
        coalesce(l.ban_state = 'ban', false) AS banned,
        coalesce(l.join_state = 'leave', false) AS has_left,
        s.first_seen_day < $w_start
            AND NOT coalesce(l.prev_ban_state = 'ban', false)
            AND NOT coalesce(l.prev_join_state = 'leave', false) AS current_at_w_start,
        a.last_active_at
    FROM seen s
    LEFT JOIN latest l ON l.member_id = s.member_id
    LEFT JOIN first_join j ON j.member_id = s.member_id
    LEFT JOIN last_active a ON a.member_id = s.member_id
)
SELECT * FROM final
