-- post_engagement (helper): how other members engaged with each post of answered_posts
-- (the engagement of SPEC §4.4 — comment, like, share, cite — counted per post; issue 21
-- "what content worked"). An event is about a post when it is a `comment` whose parent_id, or a like, share
-- or cite whose content_id, is the post's content_id; it counts when its actor is not the
-- post's author and it happened at or after the post and before the end of the post's own
-- window (as_of for posts of W, the start of W for posts of W′), so W′'s posts are measured as
-- they stood when W′ ended. engagers = distinct such members; comments, likes, shares, cites
-- = such events. Posts nobody engaged with have zeros. Reads raw `events` of W and W′ only.
-- test unique: source, event_id
WITH posts AS (
    SELECT
        source,
        event_id,
        member_id,
        content_id,
        occurred_at,
        in_w,
        CASE WHEN in_w THEN $as_of_ts ELSE $w_start_ts END AS window_end
    FROM answered_posts
    WHERE content_id IS NOT NULL AND content_id <> ''
),
engagement AS (
    SELECT
        member_id,
        event_type,
        occurred_at,
        CASE WHEN event_type = 'comment' THEN parent_id ELSE content_id END AS about
    FROM events
    WHERE community_id = $community
      AND event_date BETWEEN $wp_scan_from AND $scan_to
      AND event_type IN ('comment', 'like', 'share', 'cite')
      AND occurred_at >= $wp_start_ts AND occurred_at < $as_of_ts
),
-- Per (post, engager) first, then per post: engagers is then a plain count (count(DISTINCT …)
-- per post keeps a set per group).
by_engager AS (
    SELECT
        p.source,
        p.event_id,
        e.member_id,
        sum(CASE WHEN e.event_type = 'comment' THEN 1 ELSE 0 END) AS comments,
        sum(CASE WHEN e.event_type = 'like' THEN 1 ELSE 0 END) AS likes,
        sum(CASE WHEN e.event_type = 'share' THEN 1 ELSE 0 END) AS shares,
        sum(CASE WHEN e.event_type = 'cite' THEN 1 ELSE 0 END) AS cites
    FROM posts p
    JOIN engagement e ON e.about = p.content_id
    WHERE e.member_id <> p.member_id
      AND e.occurred_at >= p.occurred_at
      AND e.occurred_at < p.window_end
    GROUP BY p.source, p.event_id, e.member_id
),
counted AS (
    SELECT
        source,
        event_id,
        count(*) AS engagers,
        sum(comments) AS comments,
        sum(likes) AS likes,
        sum(shares) AS shares,
        sum(cites) AS cites
    FROM by_engager
    GROUP BY source, event_id
),
final AS (
    SELECT
        p.source,
        p.event_id,
        coalesce(c.engagers, 0) AS engagers,
        coalesce(c.comments, 0) AS comments,
        coalesce(c.likes, 0) AS likes,
        coalesce(c.shares, 0) AS shares,
        coalesce(c.cites, 0) AS cites
    FROM answered_posts p
    LEFT JOIN counted c ON c.source = p.source AND c.event_id = p.event_id
)
SELECT * FROM final
