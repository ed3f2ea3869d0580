-- report revenue_cohorts: the revenue cohort table (SPEC §4.9), latest cohorts first, per
-- currency, for the heat map beside the activity cohorts.
SELECT
    CAST(cohort_start AS VARCHAR) AS cohort_start,
    currency,
    period_offset,
    cohort_size,
    paying,
    paying_rate,
    net_revenue_minor,
    revenue_retention,
    is_partial
FROM revenue_cohorts
WHERE community_id = $community AND as_of = $as_of
ORDER BY cohort_start DESC, currency, period_offset
