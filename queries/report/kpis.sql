-- report kpis: the headline numbers of the emailed report (issue #4, section 1 and 7), read
-- back from the `kpis` metric table (SPEC §4, §5) of one community and as_of: W against W′.
SELECT metric, value, prev_value
FROM kpis
WHERE community_id = $community AND as_of = $as_of
ORDER BY metric
