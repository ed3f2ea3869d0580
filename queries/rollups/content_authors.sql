-- rollup_content_authors: the author of each piece of content — per UTC month, the earliest
-- `post` or `comment` event of each content_id (by occurred_at, then received_at, event_id,
-- source) with those ordering keys, so the models can find the author of any content as the
-- earliest of these rows before as_of, across months (SPEC §2 "Author resolution").
-- Incremental per UTC event_date partition, like rollup_member_day_types.
-- Parameters: $community, $from_date, $to_date (no local days here, so no timezone).
WITH ranked AS (
    SELECT
        event_date,
        content_id,
        member_id,
        occurred_at,
        received_at,
        event_id,
        source,
        row_number() OVER (
            PARTITION BY content_id
            ORDER BY occurred_at, received_at, event_id, source
        ) AS k
    FROM events
    WHERE community_id = $community
      AND event_date BETWEEN $from_date AND $to_date
      AND event_type IN ('post', 'comment')
      AND coalesce(content_id, '') <> ''
)
SELECT event_date, content_id, member_id, occurred_at, received_at, event_id, source
FROM ranked
WHERE k = 1
