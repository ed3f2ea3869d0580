-- report top_content: the posts of W that most other members engaged with (top_content), best
-- first, with their engagement and categories.
SELECT
    rank,
    member_id,
    content_id,
    title,
    CAST(occurred_at AS BIGINT) AS occurred_at_us,
    engagers,
    comments,
    likes,
    shares,
    cites,
    categories
FROM top_content
WHERE community_id = $community AND as_of = $as_of AND engagers > 0
ORDER BY rank
LIMIT $limit
