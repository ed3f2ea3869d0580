-- report unanswered_posts: the oldest posts of W still unanswered at as_of, by the definition
-- of SPEC §4.6 (no `comment` on the post's content_id by another member, at or after the post,
-- at most 48 h after it and before as_of). Timestamps as µs since the epoch.
WITH posts AS (
    SELECT source, event_id, member_id, content_id, title, body, occurred_at
    FROM events
    WHERE community_id = $community
      AND event_date BETWEEN $w_scan_from AND $scan_to
      AND event_type = 'post'
      AND occurred_at >= $w_start_ts AND occurred_at < $as_of_ts
),
answered AS (
    SELECT DISTINCT p.source, p.event_id
    FROM posts p
    JOIN events c ON c.parent_id = p.content_id
    WHERE c.community_id = $community
      AND c.event_date BETWEEN $w_scan_from AND $scan_to
      AND c.event_type = 'comment'
      AND c.member_id <> p.member_id
      AND c.occurred_at >= p.occurred_at
      AND c.occurred_at <= p.occurred_at + INTERVAL '48 hours'
      AND c.occurred_at < $as_of_ts
)
SELECT
    p.member_id,
    p.content_id,
    coalesce(nullif(trim(p.title), ''), substr(coalesce(p.body, ''), 1, 80)) AS title,
    CAST(p.occurred_at AS BIGINT) AS occurred_at_us
FROM posts p
LEFT JOIN answered a ON a.source = p.source AND a.event_id = p.event_id
WHERE a.event_id IS NULL
ORDER BY p.occurred_at, p.source, p.event_id
LIMIT $limit
