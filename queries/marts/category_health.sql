-- category_health: how members are served in each demand category (SPEC §4.6's categories;
-- issue 21) — how fast a post of W gets its first answer, and how much engagement a post draws
-- against W′. Per taxonomy and category (every configured one and `uncategorized`):
-- posts (of W); replied (posts of W with a first reply before as_of: a comment by another
-- member, answered_posts); open = posts − replied; median_reply_hours and p90_reply_hours:
-- nearest-rank percentiles of the hours from post to first reply over ALL the category's posts
-- of W, open posts counting as never answered (so the value is the time by which 50 % / 90 %
-- of the posts had an answer, and null when fewer than that share have one): the k-th smallest
-- reply time with k = ceil(p × posts), null when k > replied or posts = 0;
-- due_48h (posts of W at least 48 h before as_of), answered_48h (those answered within 48 h,
-- the SPEC §4.6 rule), answered_48h_rate = answered_48h / due_48h (null when none is due);
-- engagement_per_post = comments, likes, shares and cites by others on the category's posts of
-- W per post (post_engagement), prev_engagement_per_post the same for W′ (null without posts).
-- test unique: taxonomy, category
-- Reference: docs/metrics.md#category_health
WITH posts AS (
    SELECT
        c.taxonomy,
        c.category,
        p.in_w,
        p.occurred_at,
        p.answered,
        CASE
            WHEN p.first_reply_at IS NOT NULL THEN
                CAST(epoch_us(p.first_reply_at) - epoch_us(p.occurred_at) AS DOUBLE) / 3600000000.0
        END AS reply_hours,
        e.comments + e.likes + e.shares + e.cites AS engagement
    FROM post_categories c
    JOIN answered_posts p ON p.source = c.source AND p.event_id = c.event_id
    JOIN post_engagement e ON e.source = c.source AND e.event_id = c.event_id
),
replies AS (
    SELECT
        taxonomy,
        category,
        reply_hours,
        row_number() OVER (PARTITION BY taxonomy, category ORDER BY reply_hours) AS k
    FROM posts
    WHERE in_w AND reply_hours IS NOT NULL
),
stats AS (
    SELECT
        taxonomy,
        category,
        sum(CASE WHEN in_w THEN 1 ELSE 0 END) AS posts,
        sum(CASE WHEN in_w AND reply_hours IS NOT NULL THEN 1 ELSE 0 END) AS replied,
        sum(CASE WHEN in_w AND occurred_at <= $as_of_ts - INTERVAL '48 hours' THEN 1 ELSE 0 END) AS due_48h,
        sum(CASE WHEN in_w AND occurred_at <= $as_of_ts - INTERVAL '48 hours' AND answered THEN 1 ELSE 0 END) AS answered_48h,
        sum(CASE WHEN in_w THEN engagement ELSE 0 END) AS engagement,
        sum(CASE WHEN NOT in_w THEN 1 ELSE 0 END) AS prev_posts,
        sum(CASE WHEN NOT in_w THEN engagement ELSE 0 END) AS prev_engagement
    FROM posts
    GROUP BY taxonomy, category
),
percentiles AS (
    SELECT
        s.taxonomy,
        s.category,
        max(CASE WHEN r.k = CAST(ceil(0.5 * s.posts) AS BIGINT) THEN r.reply_hours END) AS median_reply_hours,
        max(CASE WHEN r.k = CAST(ceil(0.9 * s.posts) AS BIGINT) THEN r.reply_hours END) AS p90_reply_hours
    FROM stats s
    JOIN replies r ON r.taxonomy = s.taxonomy AND r.category = s.category
    GROUP BY s.taxonomy, s.category
),
categories AS (
    SELECT taxonomy, category FROM p_categories
    UNION ALL
    SELECT DISTINCT taxonomy, 'uncategorized' AS category FROM p_categories
),
final AS (
    SELECT
        c.taxonomy,
        c.category,
        coalesce(s.posts, 0) AS posts,
        coalesce(s.replied, 0) AS replied,
        coalesce(s.posts, 0) - coalesce(s.replied, 0) AS open,
        q.median_reply_hours,
        q.p90_reply_hours,
        coalesce(s.due_48h, 0) AS due_48h,
        coalesce(s.answered_48h, 0) AS answered_48h,
        CASE WHEN coalesce(s.due_48h, 0) > 0 THEN CAST(s.answered_48h AS DOUBLE) / s.due_48h END AS answered_48h_rate,
        CASE WHEN coalesce(s.posts, 0) > 0 THEN CAST(s.engagement AS DOUBLE) / s.posts END AS engagement_per_post,
        CASE WHEN coalesce(s.prev_posts, 0) > 0 THEN CAST(s.prev_engagement AS DOUBLE) / s.prev_posts END AS prev_engagement_per_post
    FROM categories c
    LEFT JOIN stats s ON s.taxonomy = c.taxonomy AND s.category = c.category
    LEFT JOIN percentiles q ON q.taxonomy = c.taxonomy AND q.category = c.category
    WHERE EXISTS (SELECT 1 FROM member_state)
)
SELECT * FROM final ORDER BY taxonomy, category
