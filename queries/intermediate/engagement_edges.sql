-- engagement_edges (helper): the engagement of W and of W′ (rollup member_edges) with every
-- missing target resolved (SPEC §2 "Author resolution"): an event without target_member_id
-- counts for the author of the content it is about — the member_id of the earliest `post` or
-- `comment` with that content_id in this community before as_of (it may come after the
-- engagement). W′'s rows are resolved as a run at the start of W resolves them: only an author
-- whose content came before W counts (the earliest content before as_of, if it is before W;
-- otherwise none is). A target that was given is used as given. A resolved target equal to the
-- actor is self-engagement and, like a target still unknown, counts for nobody.
-- Read by member_window (C of W, §4.1, and of W′ for the tiers at the start of W, §4.3) and
-- pagerank_edges (W only: reach, interactions_received, PageRank, §4.4).
WITH edges AS (
    SELECT event_date, member_id, target_member_id, about, day, event_type, n
    FROM member_edges
    WHERE community_id = $community
      AND event_date BETWEEN $wp_scan_from AND $scan_to
      AND day >= $wp_start AND day < $as_of
),
wanted AS (
    SELECT DISTINCT about FROM edges WHERE target_member_id IS NULL
),
authors AS (
    SELECT
        a.content_id,
        min_by_keys(a.member_id, a.occurred_at, a.received_at, a.event_id, a.source) AS member_id,
        min(a.occurred_at) AS occurred_at
    FROM content_authors a
    JOIN wanted w ON w.about = a.content_id
    WHERE a.community_id = $community
      AND a.occurred_at < $as_of_ts
    GROUP BY a.content_id
),
resolved AS (
    SELECT
        e.event_date,
        e.member_id,
        coalesce(
            e.target_member_id,
            CASE WHEN e.day >= $w_start OR c.occurred_at < $w_start_ts THEN c.member_id END
        ) AS target_member_id,
        e.day,
        e.event_type,
        e.n
    FROM edges e
    LEFT JOIN authors c ON c.content_id = e.about
)
SELECT event_date, member_id, target_member_id, day, event_type, n
FROM resolved
WHERE target_member_id IS NOT NULL
  AND target_member_id <> member_id
