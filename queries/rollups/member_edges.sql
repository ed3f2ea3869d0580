-- rollup_member_edges: per local day, who engaged with whose content — comment, like, share
-- and cite events from member_id to target_member_id, with counts. An event that names no
-- target (null or empty) keeps what it is about in `about` — its parent_id for a comment, its
-- content_id for the others — for the models to credit that content's author (SPEC §2 "Author
-- resolution", in intermediate/engagement_edges.sql): the author's post may arrive in another
-- month, even after the engagement, so a monthly rollup cannot resolve it. Given targets equal
-- to the actor (self-engagement) are dropped here; events with neither a target nor content
-- to resolve one from count for nobody and are dropped too.
-- Feeds contribution C (SPEC §4.1), reach, interactions_received and the PageRank graph (§4.4).
-- Incremental per UTC event_date partition, like rollup_member_day_types.
-- Parameters: $community, $tz, $from_date, $to_date.
WITH engagement AS (
    SELECT
        event_date,
        member_id,
        nullif(target_member_id, '') AS target_member_id,
        CASE
            WHEN coalesce(target_member_id, '') = '' THEN
                nullif(CASE WHEN event_type = 'comment' THEN parent_id ELSE content_id END, '')
        END AS about,
        local_date(occurred_at, $tz) AS day,
        event_type
    FROM events
    WHERE community_id = $community
      AND event_date BETWEEN $from_date AND $to_date
      AND event_type IN ('comment', 'like', 'share', 'cite')
)
SELECT event_date, member_id, target_member_id, about, day, event_type, count(*) AS n
FROM engagement
WHERE (target_member_id IS NOT NULL AND target_member_id <> member_id)
   OR (target_member_id IS NULL AND about IS NOT NULL)
GROUP BY event_date, member_id, target_member_id, about, day, event_type
