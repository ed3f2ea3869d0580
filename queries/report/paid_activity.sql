-- report paid_activity: the 2×2 of paying × active-in-W among current members (not left, not
-- banned; SPEC §4.3), from `member_activity` and `membership` (SPEC §4.9) of one as_of:
-- paying = status `paying` at as_of, active = at least one active day in W.
SELECT
    coalesce(m.status = 'paying', false) AS paying,
    a.active_days > 0 AS active,
    count(*) AS members
FROM member_activity a
LEFT JOIN membership m
  ON m.community_id = a.community_id AND m.as_of = a.as_of AND m.member_id = a.member_id
WHERE a.community_id = $community AND a.as_of = $as_of
  AND a.tier NOT IN ('left', 'banned')
GROUP BY coalesce(m.status = 'paying', false), a.active_days > 0
