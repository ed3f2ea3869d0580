-- report daily_active: members with an active event (SPEC §2 active types) per local day of W′
-- and W, from the `member_day_types` rollup. Its mean over W is the kpi
-- avg_daily_active_members only when counted per member-day, which this is.
SELECT CAST(day AS VARCHAR) AS day, count(DISTINCT member_id) AS members
FROM member_day_types
WHERE community_id = $community
  AND day >= $wp_start AND day < $as_of
  AND event_type IN (SELECT event_type FROM p_active_types)
GROUP BY day
ORDER BY day
