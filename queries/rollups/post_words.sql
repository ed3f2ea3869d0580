-- rollup_post_words: the terms of every post — post_terms(title + " " + body): jieba words for
-- Chinese, Unicode words otherwise, lowercased, shipped stop words and numbers dropped
-- (src/engine/terms.rs) — one row per post and term, per UTC month. Segmenting text is the
-- costly part of emerging topics (extends SPEC §4.6) and a post's text never changes, so it is
-- done once per month of events (again only when the month's files change, or the shipped
-- word lists: their hash is part of the fingerprint); term_candidates joins the posts of W and
-- W′ with these rows.
-- Incremental per UTC event_date partition, like rollup_member_day_types.
-- Parameters: $community, $from_date, $to_date (no local days here, so no timezone).
SELECT
    event_date,
    source,
    event_id,
    unnest(post_terms(coalesce(title, '') || ' ' || coalesce(body, ''))) AS term
FROM events
WHERE community_id = $community
  AND event_date BETWEEN $from_date AND $to_date
  AND event_type = 'post'
