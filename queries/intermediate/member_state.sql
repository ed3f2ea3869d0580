-- member_state (helper): every member seen before as_of (SPEC §3) with first_seen_at, the local
-- day of their first event, their cohort day (first `join`, else first seen; §4.5), whether
-- they are banned (latest ban/unban is `ban`) or left (latest join/leave is `leave`) as of D
-- (§4.3 rules 1–2; ties on occurred_at go to the later received_at, §4.8), and last_active_at
-- (latest active event before as_of, all time; §4.1). banned_at_w_start and left_at_w_start are
-- the same states when W began (for the tiers at the start of W, member_tiers), and
-- `current_at_w_start` says whether the member was a current member then (seen, not left, not
-- banned), for kpis' prev_value.
-- test unique: member_id
-- Every fact comes from one aggregation over the rows of three rollups, not from per-source
-- aggregates joined on member_id (at 100M events, 1.8M members, the joins cost more than the
-- aggregates):
-- * first seen and last active over the whole history: the months before as_of's month from
--   the monthly rollup (one row per member and month), the days of as_of's month before as_of
--   from the daily one (the left join only marks active types: a.event_type is NULL for the
--   others);
-- * the membership events before as_of. The latest of a kind is max_by_keys over
--   (occurred_at, received_at, event_type), the tie-break of §4.8 (at equal times `unban` and
--   `leave` sort last, so they win): its first key is NULL, so the row is skipped, for the
--   events of the other kind, and for those of W in the state at the start of W.
WITH facts AS (
    SELECT
        member_id, first_at, first_day, last_active_at,
        NULL AS event_type, NULL AS occurred_at, NULL AS received_at, NULL AS day
    FROM member_months
    WHERE community_id = $community AND month < $as_of_month
    UNION ALL
    SELECT
        d.member_id,
        d.first_at,
        d.day AS first_day,
        CASE WHEN a.event_type IS NOT NULL THEN d.last_at END AS last_active_at,
        NULL AS event_type, NULL AS occurred_at, NULL AS received_at, NULL AS day
    FROM member_day_types d
    LEFT JOIN p_active_types a ON a.event_type = d.event_type
    WHERE d.community_id = $community
      AND d.event_date BETWEEN $as_of_month_scan_from AND $scan_to
      AND d.day >= $as_of_month AND d.day < $as_of
    UNION ALL
    SELECT
        member_id, NULL AS first_at, NULL AS first_day, NULL AS last_active_at,
        event_type, occurred_at, received_at, day
    FROM membership_events
    WHERE community_id = $community AND day < $as_of
),
per_member AS (
    SELECT
        member_id,
        min(first_at) AS first_seen_at,
        min(first_day) AS first_seen_day,
        max(last_active_at) AS last_active_at,
        min(CASE WHEN event_type = 'join' THEN day END) AS first_join_day,
        max_by_keys(
            event_type,
            CASE WHEN event_type IN ('ban', 'unban') THEN occurred_at END, received_at, event_type
        ) AS ban_state,
        max_by_keys(
            event_type,
            CASE WHEN event_type IN ('join', 'leave') THEN occurred_at END, received_at, event_type
        ) AS join_state,
        max_by_keys(
            event_type,
            CASE WHEN event_type IN ('ban', 'unban') AND day < $w_start THEN occurred_at END,
            received_at,
            event_type
        ) AS ban_state_at_w_start,
        max_by_keys(
            event_type,
            CASE WHEN event_type IN ('join', 'leave') AND day < $w_start THEN occurred_at END,
            received_at,
            event_type
        ) AS join_state_at_w_start
    FROM facts
    GROUP BY member_id
),
states AS (
    SELECT
        member_id,
        first_seen_at,
        first_seen_day,
        coalesce(first_join_day, first_seen_day) AS cohort_day,
        coalesce(ban_state = 'ban', false) AS banned,
        coalesce(join_state = 'leave', false) AS has_left,
        coalesce(ban_state_at_w_start = 'ban', false) AS banned_at_w_start,
        coalesce(join_state_at_w_start = 'leave', false) AS left_at_w_start,
        last_active_at
    FROM per_member
    -- Every member with a membership event has a first event too; the guard keeps the model's
    -- rows exactly the members seen even if the rollups ever disagree.
    WHERE first_seen_at IS NOT NULL
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
