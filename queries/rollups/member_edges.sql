-- rollup_member_edges: per local day, who engaged with whose content — comment, like, share
-- and cite events from member_id to target_member_id (never to oneself), with counts.
-- Feeds contribution C (SPEC §4.1), reach, interactions_received and the PageRank graph (§4.4).
-- Incremental per UTC event_date partition, like rollup_member_day_types.
-- Parameters: $community, $tz, $from_date, $to_date.
SELECT
    event_date,
    member_id,
    target_member_id,
    local_date(occurred_at, $tz) AS day,
    event_type,
    count(*) AS n
FROM events
WHERE community_id = $community
  AND event_date BETWEEN $from_date AND $to_date
  AND event_type IN ('comment', 'like', 'share', 'cite')
  AND target_member_id IS NOT NULL
  AND target_member_id <> member_id
GROUP BY event_date, member_id, target_member_id, local_date(occurred_at, $tz), event_type
