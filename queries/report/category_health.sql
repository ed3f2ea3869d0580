-- report category_health: per demand category (category_health), how fast a post gets its first
-- answer and how much engagement it draws against W′; configured categories first, then
-- `uncategorized`, per taxonomy.
SELECT
    taxonomy,
    category,
    posts,
    replied,
    open,
    median_reply_hours,
    p90_reply_hours,
    due_48h,
    answered_48h,
    answered_48h_rate,
    engagement_per_post,
    prev_engagement_per_post
FROM category_health
WHERE community_id = $community AND as_of = $as_of
ORDER BY taxonomy, CASE WHEN category = 'uncategorized' THEN 1 ELSE 0 END, category
