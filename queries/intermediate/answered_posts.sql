-- answered_posts (helper): the one definition of SPEC §4.6's "answered" rule. Every `post` of
-- W and W′ (occurred_at in [start of W′, as_of)) with its key (source, event_id), author,
-- content_id, title, body and time, `in_w` (the post is in W), `first_reply_at`: the earliest
-- `comment` whose parent_id is the post's content_id, by another member, at or after the post
-- and before as_of (null while the post is open), and `answered`: that first reply came at
-- most 48 h after the post (inclusive). Read by demand_categories (unanswered per category),
-- category_health (time to a first reply) and by the report's oldest unanswered posts
-- (queries/report/unanswered_posts.sql, where it is a view). Reads raw `events` for W and W′
-- only (partition-pruned by event_date).
-- test unique: source, event_id
WITH posts AS (
    SELECT source, event_id, member_id, content_id, title, body, occurred_at
    FROM events
    WHERE community_id = $community
      AND event_date BETWEEN $wp_scan_from AND $scan_to
      AND event_type = 'post'
      AND occurred_at >= $wp_start_ts AND occurred_at < $as_of_ts
),
first_replies AS (
    SELECT p.source, p.event_id, min(c.occurred_at) AS first_reply_at
    FROM posts p
    JOIN events c ON c.parent_id = p.content_id
    WHERE c.community_id = $community
      AND c.event_date BETWEEN $wp_scan_from AND $scan_to
      AND c.event_type = 'comment'
      AND c.member_id <> p.member_id
      AND c.occurred_at >= p.occurred_at
      AND c.occurred_at < $as_of_ts
    GROUP BY p.source, p.event_id
),
final AS (
    SELECT
        p.source,
        p.event_id,
        p.member_id,
        p.content_id,
        p.title,
        p.body,
        p.occurred_at,
        p.occurred_at >= $w_start_ts AS in_w,
        r.first_reply_at,
        coalesce(r.first_reply_at <= p.occurred_at + INTERVAL '48 hours', false) AS answered
    FROM posts p
    LEFT JOIN first_replies r ON r.source = p.source AND r.event_id = p.event_id
)
SELECT * FROM final
