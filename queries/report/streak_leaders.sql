-- report streak_leaders: the longest current check-in streaks (打卡, SPEC §4.10) of current
-- members, from `member_activity`: streak desc, longest streak desc, member_id.
SELECT member_id, checkin_streak, longest_checkin_streak
FROM member_activity
WHERE community_id = $community AND as_of = $as_of
  AND tier NOT IN ('left', 'banned')
  AND checkin_streak > 0
ORDER BY checkin_streak DESC, longest_checkin_streak DESC, member_id
LIMIT $limit
