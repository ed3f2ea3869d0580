-- member_state (helper): every member seen before as_of (SPEC §3) with first_seen_at, the local
-- day of their first event, their cohort day (first `join`, else first seen; §4.5), whether
-- they are banned (latest ban/unban is `ban`) or left (latest join/leave is `leave`) as of D
-- (§4.3 rules 1–2; ties on occurred_at go to the later received_at, §4.8), and last_active_at
-- (latest active event before as_of, all time; §4.1). banned_at_w_start and left_at_w_start are
-- the same states when W began (for the tiers at the start of W, member_tiers), and
-- `current_at_w_start` says whether the member was a current member then (seen, not left, not
-- banned), for kpis' prev_value.
-- test unique: member_id
-- First seen and last active over the whole history: the months before as_of's month from the
-- monthly rollup (one row per member and month), the days of as_of's month before as_of from
-- the daily one (the left join only marks active types: a.event_type is NULL for the others).
WITH activity AS (
    SELECT member_id, first_at, first_day, last_active_at
    FROM member_months
    WHERE community_id = $community AND month < $as_of_month
    UNION ALL
    SELECT
        d.member_id,
        d.first_at,
        d.day AS first_day,
        CASE WHEN a.event_type IS NOT NULL THEN d.last_at END AS last_active_at
    FROM member_day_types d
    LEFT JOIN p_active_types a ON a.event_type = d.event_type
    WHERE d.community_id = $community
      AND d.event_date BETWEEN $as_of_month_scan_from AND $scan_to
      AND d.day >= $as_of_month AND d.day < $as_of
),
seen AS (
    SELECT
        member_id,
        min(first_at) AS first_seen_at,
        min(first_day) AS first_seen_day,
        max(last_active_at) AS last_active_at
    FROM activity
    GROUP BY member_id
),
membership AS (
    SELECT member_id, event_type, occurred_at, received_at, day
    FROM membership_events
    WHERE community_id = $community AND day < $as_of
),
-- The state at w_start needs a ranking of its own only for members with a membership event in
-- W; for everyone else it is the state at as_of. Ranking every row for both cutoffs made this
-- window three times as slow at 100M events.
changed_in_w AS (
    SELECT DISTINCT member_id
    FROM membership
    WHERE day >= $w_start
),
ranked_rows AS (
    SELECT 'as_of' AS cutoff_name, member_id, event_type, occurred_at, received_at
    FROM membership
    UNION ALL
    SELECT 'w_start' AS cutoff_name, member_id, event_type, occurred_at, received_at
    FROM membership
    WHERE day < $w_start AND member_id IN (SELECT member_id FROM changed_in_w)
),
ranked AS (
    SELECT
        cutoff_name,
        member_id,
        event_type,
        row_number() OVER (
            PARTITION BY cutoff_name, member_id, event_type IN ('ban', 'unban')
            ORDER BY occurred_at DESC, received_at DESC, event_type DESC
        ) AS recency
    FROM ranked_rows
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
states AS (
    SELECT
        s.member_id,
        s.first_seen_at,
        s.first_seen_day,
        coalesce(j.first_join_day, s.first_seen_day) AS cohort_day,
        coalesce(l.ban_state = 'ban', false) AS banned,
        coalesce(l.join_state = 'leave', false) AS has_left,
        coalesce(CASE WHEN c.member_id IS NULL THEN l.ban_state ELSE l.prev_ban_state END = 'ban', false)
            AS banned_at_w_start,
        coalesce(CASE WHEN c.member_id IS NULL THEN l.join_state ELSE l.prev_join_state END = 'leave', false)
            AS left_at_w_start,
        s.last_active_at
    FROM seen s
    LEFT JOIN latest l ON l.member_id = s.member_id
    LEFT JOIN first_join j ON j.member_id = s.member_id
    LEFT JOIN changed_in_w c ON c.member_id = s.member_id
),
final AS (
    SELECT
        member_id,
        first_seen_at,
        first_seen_day,
        cohort_day,
        banned,
        has_left,
        banned_at_w_start,
        left_at_w_start,
        first_seen_day < $w_start AND NOT banned_at_w_start AND NOT left_at_w_start AS current_at_w_start,
        last_active_at
    FROM states
)
SELECT * FROM final
