-- top_content (内容表现): the posts of W ranked by how many other members engaged with them
-- (issue 21; engagement as in SPEC §4.4, counted per post by post_engagement: comments, likes,
-- shares and cites by members other than the author, after the post and before as_of).
-- rank orders by engagers desc, then all engagement events desc, then the earlier post, then
-- source and event_id; every post of W has a row. categories: the post's categories of every
-- taxonomy (SPEC §4.6, post_categories), `uncategorized` left out, sorted.
-- test unique: rank
-- test unique: source, event_id
-- Reference: docs/metrics.md#top_content
WITH posts AS (
    SELECT source, event_id, member_id, content_id, title, occurred_at
    FROM answered_posts
    WHERE in_w
),
categories AS (
    SELECT source, event_id, array_sort(array_agg(category), 'ASC', 'NULLS LAST') AS categories
    FROM (
        SELECT DISTINCT source, event_id, category
        FROM post_categories
        WHERE category <> 'uncategorized'
    ) c
    GROUP BY source, event_id
),
final AS (
    SELECT
        row_number() OVER (
            ORDER BY e.engagers DESC, e.comments + e.likes + e.shares + e.cites DESC,
                     p.occurred_at, p.source, p.event_id
        ) AS rank,
        p.source,
        p.event_id,
        p.content_id,
        p.member_id,
        p.title,
        p.occurred_at,
        e.engagers,
        e.comments,
        e.likes,
        e.shares,
        e.cites,
        c.categories
    FROM posts p
    JOIN post_engagement e ON e.source = p.source AND e.event_id = p.event_id
    LEFT JOIN categories c ON c.source = p.source AND c.event_id = p.event_id
)
SELECT * FROM final ORDER BY rank
