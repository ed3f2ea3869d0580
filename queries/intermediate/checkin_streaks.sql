-- checkin_streaks (helper): SPEC §4.10 from the daily rollup. checkin_streak = consecutive
-- local days ending on D−1 with at least one `checkin` each (any check-in, active type or not;
-- 0 when D−1 has none); longest_checkin_streak = the longest such run before as_of. Runs of
-- consecutive days are gaps-and-islands: day number − row number is constant along a run.
-- Only members with a check-in have a row (member_activity fills in 0).
-- test unique: member_id
WITH days AS (
    SELECT DISTINCT member_id, day
    FROM member_day_types
    WHERE community_id = $community
      AND event_type = 'checkin'
      AND day < $as_of
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
    SELECT member_id, run, count(*) AS days, max(day) AS last_day
    FROM runs
    GROUP BY member_id, run
),
final AS (
    SELECT
        member_id,
        max(CASE WHEN last_day = $last_day THEN days ELSE 0 END) AS checkin_streak,
        max(days) AS longest_checkin_streak
    FROM lengths
    GROUP BY member_id
)
SELECT * FROM final
