-- revenue_cohorts: SPEC §4.9. A member's revenue cohort is the local period (cohort_grain) of
-- the start of their first uncancelled purchase (members without one have no cohort, and
-- their money is in no row). For each of the `cohort_periods` most recent cohorts, each
-- currency in which its members have a purchase or refund before as_of (a null currency is no
-- currency; money before the cohort's period is dropped, and a currency with only such money
-- has no rows), and each period offset k whose period starts before as_of: cohort_size,
-- paying (cohort members with a spell of as_of that starts before the period's end and ends
-- after its start), paying_rate = paying / cohort_size, net_revenue_minor (the cohort's
-- purchases − refunds in that currency with occurred_at in the period; a null amount counts
-- 0), revenue_retention (net_revenue_minor / the cohort's and currency's period-0 value; null
-- when that is ≤ 0) and is_partial (as retention_cohorts, §4.5).
-- A spell [start, end) overlaps local period P exactly when P lies between the period of
-- start's local day and the period of the local day of end − 1 µs.
-- test unique: cohort_start, currency, period_offset
-- Reference: docs/metrics.md#revenue_cohorts
WITH members AS (
    SELECT member_id, period_start(min(day), $grain) AS cohort_start
    FROM purchase_terms
    WHERE cancelled_us IS NULL
    GROUP BY member_id
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
money AS (
    SELECT
        m.cohort_start,
        e.currency,
        periods_between(m.cohort_start, period_start(e.day, $grain), $grain) AS period_offset,
        sum(CASE WHEN e.event_type = 'purchase' THEN coalesce(e.amount_minor, 0) ELSE -coalesce(e.amount_minor, 0) END) AS net
    FROM payment_events e
    JOIN members m ON m.member_id = e.member_id
    JOIN recent r ON r.cohort_start = m.cohort_start
    WHERE e.community_id = $community
      AND e.occurred_at < $as_of_ts
      AND e.currency IS NOT NULL
      AND e.day >= m.cohort_start
    GROUP BY m.cohort_start, e.currency, periods_between(m.cohort_start, period_start(e.day, $grain), $grain)
),
spell_periods AS (
    SELECT
        m.member_id,
        m.cohort_start,
        periods_between(m.cohort_start, period_start(local_date(from_epoch_us(s.spell_start_us), $tz), $grain), $grain) AS first_offset,
        periods_between(m.cohort_start, period_start(local_date(from_epoch_us(s.spell_end_us - 1), $tz), $grain), $grain) AS last_offset
    FROM paid_spells s
    JOIN members m ON m.member_id = s.member_id
    JOIN recent r ON r.cohort_start = m.cohort_start
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
-- Distinct (cohort, offset, member) first, then a plain count (count(DISTINCT …) keeps a set
-- per group).
paying AS (
    SELECT cohort_start, period_offset, count(*) AS paying
    FROM (
        SELECT DISTINCT o.cohort_start, o.period_offset, p.member_id
        FROM offsets o
        JOIN spell_periods p
          ON p.cohort_start = o.cohort_start
         AND p.first_offset <= o.period_offset
         AND p.last_offset >= o.period_offset
    )
    GROUP BY cohort_start, period_offset
),
-- Each cohort's currencies, offsets and money in one pass over `money` (a CTE read three
-- times — currencies, the period's net, period 0's — was computed three times).
money_grid AS (
    SELECT
        o.cohort_start,
        m.currency,
        o.period_offset,
        o.cohort_size,
        o.last_offset,
        sum(CASE WHEN m.period_offset = o.period_offset THEN m.net ELSE 0 END) AS net,
        sum(CASE WHEN m.period_offset = 0 THEN m.net ELSE 0 END) AS base_net
    FROM offsets o
    JOIN money m ON m.cohort_start = o.cohort_start
    GROUP BY o.cohort_start, m.currency, o.period_offset, o.cohort_size, o.last_offset
),
final AS (
    SELECT
        g.cohort_start,
        g.currency,
        g.period_offset,
        g.cohort_size,
        coalesce(p.paying, 0) AS paying,
        CAST(coalesce(p.paying, 0) AS DOUBLE) / g.cohort_size AS paying_rate,
        g.net AS net_revenue_minor,
        CASE WHEN g.base_net <= 0 THEN NULL ELSE CAST(g.net AS DOUBLE) / g.base_net END AS revenue_retention,
        g.period_offset = g.last_offset AND period_start($as_of, $grain) <> $as_of AS is_partial
    FROM money_grid g
    LEFT JOIN paying p ON p.cohort_start = g.cohort_start AND p.period_offset = g.period_offset
)
SELECT * FROM final ORDER BY cohort_start DESC, currency, period_offset
