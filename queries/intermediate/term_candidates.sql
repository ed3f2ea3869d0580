-- term_candidates (helper): the words of the posts of W and W′ that emerging_terms ranks
-- (extends SPEC §4.6): per post (answered_posts) its terms from the post_words rollup —
-- post_terms(title + " " + body): jieba words for Chinese, Unicode words otherwise, lowercased,
-- shipped stop words and numbers dropped (src/engine/terms.rs), segmented once per month of
-- events — less the community's extra stop words (p_stopwords) and every term that contains a
-- keyword of any taxonomy or is contained in one; one row per taxonomy, post and term. A model
-- of its own so that emerging_terms' plan stays shallow enough for Ballista to ship (its
-- protobuf decoder refuses plans nested deeper than 100 levels).
WITH posts AS (
    SELECT
        source,
        event_id,
        member_id,
        in_w,
        occurred_at,
        CASE WHEN coalesce(title, '') <> '' THEN title ELSE substr(coalesce(body, ''), 1, 80) END AS example
    FROM answered_posts
),
post_term AS (
    SELECT p.source, p.event_id, p.member_id, p.in_w, p.occurred_at, p.example, w.term
    FROM posts p
    JOIN post_words w ON w.source = p.source AND w.event_id = p.event_id
    WHERE w.community_id = $community
      -- the UTC partitions answered_posts reads its posts from
      AND w.event_date BETWEEN $wp_scan_from AND $scan_to
),
kept AS (
    SELECT * FROM post_term WHERE term NOT IN (SELECT word FROM p_stopwords)
),
distinct_terms AS (
    SELECT DISTINCT term FROM kept
),
covered AS (
    SELECT DISTINCT t.term
    FROM distinct_terms t
    JOIN p_keywords k ON strpos(t.term, k.keyword) > 0 OR strpos(k.keyword, t.term) > 0
),
taxonomies AS (
    SELECT DISTINCT taxonomy FROM p_categories
),
candidates AS (
    SELECT x.taxonomy, k.*
    FROM kept k
    CROSS JOIN taxonomies x
    LEFT JOIN covered c ON c.term = k.term
    WHERE c.term IS NULL
)
SELECT taxonomy, source, event_id, member_id, in_w, occurred_at, example, term FROM candidates
