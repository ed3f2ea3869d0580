-- checkin_streaks (helper): SPEC §4.10 from the daily rollup. checkin_streak = consecutive
-- local days ending on D−1 with at least one `checkin` each (any check-in, active type or not;
-- 0 when D−1 has none); longest_checkin_streak = the longest such run before as_of.
-- Carried forward, so a run's cost does not grow with the history: `checkin_state` holds both
-- values per member as of $state_through (the end of a month at least a month back: this same
-- model computed at the end of each month and stored, see models::streaks), and only the days
-- from $streak_from (the day after it) to D−1 are read. A run of days starting on $streak_from
-- continues the state's streak. Runs of consecutive days are gaps-and-islands: day number −
-- row number is constant along a run.
-- Only members with a check-in have a row (member_activity fills in 0).
-- test unique: member_id
WITH days AS (
    SELECT DISTINCT member_id, day
    FROM member_day_types
    WHERE community_id = $community
      AND event_type = 'checkin'
      AND day BETWEEN $streak_from AND $last_day
      -- a local day lies within one UTC day either side of its date
      AND event_date BETWEEN $state_through AND $as_of
),
runs AS (
    SELECT
        member_id,
        day,
        days_between(DATE '1970-01-01', day)
            - CAST(row_number() OVER (PARTITION BY member_id ORDER BY day) AS BIGINT) AS run
    FROM days
),
lengths AS (
    SELECT member_id, count(*) AS days, min(day) AS first_day, max(day) AS end_day
    FROM runs
    GROUP BY member_id, run
),
continued AS (
    SELECT
        l.member_id,
        l.days + CASE WHEN l.first_day = $streak_from THEN coalesce(s.checkin_streak, 0) ELSE 0 END AS days,
        l.end_day
    FROM lengths l
    LEFT JOIN checkin_state s ON s.member_id = l.member_id
),
candidates AS (
    SELECT member_id, CASE WHEN end_day = $last_day THEN days ELSE 0 END AS streak, days AS longest
    FROM continued
    UNION ALL
    SELECT member_id, CAST(0 AS BIGINT) AS streak, longest_checkin_streak AS longest
    FROM checkin_state
),
final AS (
    SELECT
        member_id,
        max(streak) AS checkin_streak,
        max(longest) AS longest_checkin_streak
    FROM candidates
    GROUP BY member_id
)
SELECT * FROM final
