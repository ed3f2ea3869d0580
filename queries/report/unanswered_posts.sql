-- report unanswered_posts: the oldest posts of W still unanswered at as_of, by the definition
-- of SPEC §4.6, which lives in the intermediate model answered_posts (read here as a view over
-- the lake, see `models::register_views`). Timestamps as µs since the epoch.
SELECT
    member_id,
    content_id,
    coalesce(nullif(trim(title), ''), substr(coalesce(body, ''), 1, 80)) AS title,
    CAST(occurred_at AS BIGINT) AS occurred_at_us
FROM answered_posts
WHERE in_w AND NOT answered
ORDER BY occurred_at, source, event_id
LIMIT $limit
