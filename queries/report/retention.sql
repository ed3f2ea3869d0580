-- report retention: the cohort table (SPEC §4.5), latest cohorts first, for the heat map.
SELECT
    CAST(cohort_start AS VARCHAR) AS cohort_start,
    period_offset,
    cohort_size,
    retained,
    retention_rate,
    is_partial
FROM retention_cohorts
WHERE community_id = $community AND as_of = $as_of
ORDER BY cohort_start DESC, period_offset
