-- member_activity: one row per member seen before as_of — P, I, C, R, the activity score
-- A = wP·P + wI·I + wC·C + wR·R (SPEC §4.1, raw or percentile-normalized), active days,
-- points (§4.2), tier (§4.3, first matching rule wins: member_tiers), first_seen_at and
-- last_active_at.
-- R = active_days / eligible_days, eligible_days = days of W on or after the first-seen day.
-- checkin_streak and longest_checkin_streak: §4.10 (checkin_streaks; 0 without check-ins).
-- test unique: member_id
-- test accepted_values: tier = banned, left, contributor, active, new, at_risk, dormant, regular
-- Reference: docs/metrics.md#member_activity
WITH base AS (
    SELECT
        s.member_id,
        s.first_seen_at,
        s.first_seen_day,
        s.last_active_at,
        t.tier,
        w.participation,
        w.interaction,
        w.contribution,
        w.active_days,
        w.points,
        coalesce(k.checkin_streak, 0) AS checkin_streak,
        coalesce(k.longest_checkin_streak, 0) AS longest_checkin_streak,
        CAST(w.active_days AS DOUBLE)
            / CAST(days_between(greatest($w_start, s.first_seen_day), $as_of) AS DOUBLE) AS retention
    FROM member_state s
    JOIN member_window w ON w.member_id = s.member_id
    JOIN member_tiers t ON t.member_id = s.member_id
    LEFT JOIN checkin_streaks k ON k.member_id = s.member_id
),
normalized AS (
    SELECT
        *,
        CASE WHEN $percentile THEN percent_rank() OVER (ORDER BY participation) ELSE CAST(participation AS DOUBLE) END AS p_norm,
        CASE WHEN $percentile THEN percent_rank() OVER (ORDER BY interaction) ELSE CAST(interaction AS DOUBLE) END AS i_norm,
        CASE WHEN $percentile THEN percent_rank() OVER (ORDER BY contribution) ELSE CAST(contribution AS DOUBLE) END AS c_norm,
        CASE WHEN $percentile THEN percent_rank() OVER (ORDER BY retention) ELSE retention END AS r_norm
    FROM base
),
final AS (
    SELECT
        member_id,
        participation,
        interaction,
        contribution,
        retention,
        $weight_participation * p_norm + $weight_interaction * i_norm
            + $weight_contribution * c_norm + $weight_retention * r_norm AS activity_score,
        active_days,
        points,
        tier,
        first_seen_at,
        last_active_at,
        checkin_streak,
        longest_checkin_streak
    FROM normalized
)
SELECT * FROM final ORDER BY member_id
