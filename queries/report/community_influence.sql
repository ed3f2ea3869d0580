-- report community_influence: the community influence score and its parts (SPEC §4.4) at this
-- as_of and at the previous report's as_of ($prev_as_of), newest first.
SELECT as_of = $as_of AS is_current, size_total, members, activity_rate, participation_rate, influence
FROM community_influence
WHERE community_id = $community AND (as_of = $as_of OR as_of = $prev_as_of)
ORDER BY as_of DESC
