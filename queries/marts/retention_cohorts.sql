-- retention_cohorts: SPEC §4.5. A member's cohort is the local month (or ISO week) of their
-- first `join`, else of first_seen. For each of the `cohort_periods` most recent cohorts and
-- each period offset k whose period starts before as_of: retained = cohort members with an
-- active event in period cohort+k (before as_of), retention_rate = retained / cohort_size.
-- is_partial: the period's exclusive end is after as_of (only the latest period can be, and a
-- period ending the day before D is complete).
-- test unique: cohort_start, period_offset
-- Reference: docs/metrics.md#retention_cohorts
WITH members AS (
    SELECT member_id, period_start(cohort_day, $grain) AS cohort_start
    FROM member_state
),
sizes AS (
    SELECT cohort_start, count(*) AS cohort_size
    FROM members
    GROUP BY cohort_start
),
recent AS (
    SELECT cohort_start, cohort_size
    FROM (SELECT cohort_start, cohort_size, row_number() OVER (ORDER BY cohort_start DESC) AS recency FROM sizes)
    WHERE recency <= $cohort_periods
),
-- Members' active periods: with month cohorts, the months before as_of's month come from the
-- monthly rollup (a row with last_active_at had an active event that month) and only as_of's
-- month from the daily one; with week cohorts every day comes from the daily rollup.
active_periods AS (
    SELECT DISTINCT member_id, period
    FROM (
        SELECT member_id, month AS period
        FROM member_months
        WHERE community_id = $community
          AND $grain = 'month'
          AND last_active_at IS NOT NULL
          AND month < $as_of_month
          AND month >= (SELECT min(cohort_start) FROM recent)
        UNION ALL
        SELECT d.member_id, period_start(d.day, $grain) AS period
        FROM member_day_types d
        JOIN p_active_types a ON a.event_type = d.event_type
        WHERE d.community_id = $community
          AND d.day < $as_of
          AND d.day >= (SELECT min(cohort_start) FROM recent)
          AND ($grain <> 'month' OR d.day >= $as_of_month)
    )
),
retained AS (
    SELECT m.cohort_start, periods_between(m.cohort_start, p.period, $grain) AS period_offset, count(*) AS retained
    FROM members m
    JOIN recent r ON r.cohort_start = m.cohort_start
    JOIN active_periods p ON p.member_id = m.member_id AND p.period >= m.cohort_start
    GROUP BY m.cohort_start, periods_between(m.cohort_start, p.period, $grain)
),
grid AS (
    SELECT
        cohort_start,
        cohort_size,
        periods_between(cohort_start, period_start($last_day, $grain), $grain) AS last_offset
    FROM recent
),
offsets AS (
    SELECT cohort_start, cohort_size, last_offset, unnest(range(0, last_offset + 1)) AS period_offset
    FROM grid
),
final AS (
    SELECT
        o.cohort_start,
        o.period_offset,
        o.cohort_size,
        coalesce(r.retained, 0) AS retained,
        CAST(coalesce(r.retained, 0) AS DOUBLE) / o.cohort_size AS retention_rate,
        o.period_offset = o.last_offset AND period_start($as_of, $grain) <> $as_of AS is_partial
    FROM offsets o
    LEFT JOIN retained r ON r.cohort_start = o.cohort_start AND r.period_offset = o.period_offset
)
SELECT * FROM final ORDER BY cohort_start DESC, period_offset
