-- report membership_total: members with a purchase before as_of (rows of `membership`, SPEC
-- §4.9); the report shows its membership section when there are any.
SELECT count(*) AS members
FROM membership
WHERE community_id = $community AND as_of = $as_of
