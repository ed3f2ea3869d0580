-- post_categories (helper): SPEC §4.6's classification of every post of answered_posts (W and
-- W′), one row per taxonomy and category the post is in: a post is in every category one of
-- whose lowercased keywords is a substring of lowercase(title + " " + body); in none of a
-- taxonomy's → `uncategorized` of that taxonomy. Read by demand_categories, category_health
-- and top_content, so the rule lives here once.
-- test unique: taxonomy, category, source, event_id
WITH posts AS (
    SELECT source, event_id, lower(coalesce(title, '') || ' ' || coalesce(body, '')) AS text
    FROM answered_posts
),
matched AS (
    SELECT DISTINCT k.taxonomy, k.category, p.source, p.event_id
    FROM posts p
    JOIN p_keywords k ON strpos(p.text, k.keyword) > 0
),
taxonomies AS (
    SELECT DISTINCT taxonomy FROM p_categories
),
final AS (
    SELECT taxonomy, category, source, event_id FROM matched
    UNION ALL
    SELECT t.taxonomy, 'uncategorized' AS category, p.source, p.event_id
    FROM posts p
    CROSS JOIN taxonomies t
    WHERE NOT EXISTS (
        SELECT 1 FROM matched m
        WHERE m.source = p.source AND m.event_id = p.event_id AND m.taxonomy = t.taxonomy
    )
)
SELECT * FROM final
