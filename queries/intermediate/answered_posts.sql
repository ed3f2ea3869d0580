-- answered_posts (helper): the one definition of SPEC §4.6's "answered" rule. Every `post` of
-- W and W′ (occurred_at in [start of W′, as_of)) with its key (source, event_id), author,
-- content_id, title, body and time, `in_w` (the post is in W), and `answered`: some `comment`
-- whose parent_id is the post's content_id, by another member, at or after the post, at most
-- 48 h after it (inclusive) and before as_of. Read by demand_categories (unanswered per
-- category) and by the report's oldest unanswered posts (queries/report/unanswered_posts.sql,
-- where it is a view). Reads raw `events` for W and W′ only (partition-pruned by event_date).
-- test unique: source, event_id
WITH posts AS (
    SELECT source, event_id, member_id, content_id, title, body, occurred_at
    FROM events
    WHERE community_id = $community
      AND event_date BETWEEN $wp_scan_from AND $scan_to
      AND event_type = 'post'
      AND occurred_at >= $wp_start_ts AND occurred_at < $as_of_ts
),
answered AS (
    SELECT DISTINCT p.source, p.event_id
    FROM posts p
    JOIN events c ON c.parent_id = p.content_id
    WHERE c.community_id = $community
      AND c.event_date BETWEEN $wp_scan_from AND $scan_to
      AND c.event_type = 'comment'
      AND c.member_id <> p.member_id
      AND c.occurred_at >= p.occurred_at
      AND c.occurred_at <= p.occurred_at + INTERVAL '48 hours'
      AND c.occurred_at < $as_of_ts
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
        a.event_id IS NOT NULL AS answered
    FROM posts p
    LEFT JOIN answered a ON a.source = p.source AND a.event_id = p.event_id
)
SELECT * FROM final
