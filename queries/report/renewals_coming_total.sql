-- report renewals_coming_total: how many members "renewals coming up" (SPEC §4.9) has in all
-- (the report lists the soonest).
SELECT count(*) AS members
FROM membership
WHERE community_id = $community AND as_of = $as_of
  AND status = 'paying' AND days_left < $horizon_days
