-- demand_categories (需求分类): SPEC §4.6. Posts of W classified by keyword: a post is in every
-- category one of whose lowercased keywords is a substring of lowercase(title + " " + body);
-- in none → `uncategorized`. Per category: posts, members (distinct authors), share of all W
-- posts, prev_posts (W′), growth, unanswered (posts of W not answered within 48 h, by the rule
-- of answered_posts), unanswered_rate, priority = members × (1 + unanswered_rate), and
-- priority_rank within the taxonomy by priority desc, posts desc, category asc. Every
-- configured category appears, with zeros if need be. The posts of W and W′ come from
-- answered_posts (raw `events` of W and W′ only), their categories from post_categories (the
-- keyword rule, shared with emerging_terms).
-- test unique: taxonomy, category
-- test unique: taxonomy, priority_rank
-- Reference: docs/metrics.md#demand_categories
WITH posts AS (
    SELECT
        row_number() OVER (ORDER BY source, event_id) AS post_no,
        source,
        event_id,
        member_id,
        in_w,
        answered
    FROM answered_posts
),
matched AS (
    SELECT c.taxonomy, c.category, p.post_no
    FROM posts p
    JOIN post_categories c ON c.source = p.source AND c.event_id = p.event_id
),
taxonomies AS (
    SELECT DISTINCT taxonomy FROM p_categories
),
labeled AS (
    SELECT taxonomy, category, post_no FROM matched
    UNION ALL
    SELECT t.taxonomy, 'uncategorized' AS category, p.post_no
    FROM posts p
    CROSS JOIN taxonomies t
    WHERE NOT EXISTS (SELECT 1 FROM matched m WHERE m.post_no = p.post_no AND m.taxonomy = t.taxonomy)
),
stats AS (
    SELECT
        l.taxonomy,
        l.category,
        count(DISTINCT CASE WHEN p.in_w THEN l.post_no END) AS posts,
        count(DISTINCT CASE WHEN p.in_w THEN p.member_id END) AS members,
        count(DISTINCT CASE WHEN NOT p.in_w THEN l.post_no END) AS prev_posts,
        count(DISTINCT CASE WHEN p.in_w AND NOT p.answered THEN l.post_no END) AS unanswered
    FROM labeled l
    JOIN posts p ON p.post_no = l.post_no
    GROUP BY l.taxonomy, l.category
),
total AS (
    SELECT count(*) AS w_posts FROM posts WHERE in_w
),
categories AS (
    SELECT taxonomy, category FROM p_categories
    UNION ALL
    SELECT taxonomy, 'uncategorized' AS category FROM taxonomies
),
measured AS (
    SELECT
        c.taxonomy,
        c.category,
        coalesce(s.posts, 0) AS posts,
        coalesce(s.members, 0) AS members,
        CASE WHEN t.w_posts = 0 THEN 0.0 ELSE CAST(coalesce(s.posts, 0) AS DOUBLE) / t.w_posts END AS share,
        coalesce(s.prev_posts, 0) AS prev_posts,
        CAST(coalesce(s.posts, 0) - coalesce(s.prev_posts, 0) AS DOUBLE) / greatest(coalesce(s.prev_posts, 0), 1) AS growth,
        coalesce(s.unanswered, 0) AS unanswered,
        CASE WHEN coalesce(s.posts, 0) = 0 THEN 0.0 ELSE CAST(s.unanswered AS DOUBLE) / s.posts END AS unanswered_rate
    FROM categories c
    CROSS JOIN total t
    LEFT JOIN stats s ON s.taxonomy = c.taxonomy AND s.category = c.category
    WHERE EXISTS (SELECT 1 FROM member_state)
),
final AS (
    SELECT
        *,
        members * (1 + unanswered_rate) AS priority,
        row_number() OVER (
            PARTITION BY taxonomy
            ORDER BY members * (1 + unanswered_rate) DESC, posts DESC, category ASC
        ) AS priority_rank
    FROM measured
)
SELECT * FROM final ORDER BY taxonomy, priority_rank
