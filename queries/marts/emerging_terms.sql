-- emerging_terms: what members newly talk about that no keyword covers — extends SPEC §4.6
-- (demand categories). One row per taxonomy and term. A post's terms are post_terms(title + " "
-- + body): jieba words for Chinese, Unicode words otherwise, lowercased, shipped stop words
-- and numbers dropped (src/engine/terms.rs). A term is left out when it is one of the
-- community's extra stop words (p_stopwords), or when it contains a keyword of any category of
-- any taxonomy (the keyword rule already classifies every post with it) or is contained in one
-- (a fragment of a keyword). The terms, their numbers and ranks are the same in every
-- taxonomy; only `category` is the taxonomy's own. Per term: authors (distinct, posts of W), posts (W),
-- prev_authors (W′), growth = (authors − prev_authors) / max(prev_authors, 1); only terms with
-- at least $emerging_min_authors authors; rank 1… within the taxonomy by authors desc, growth
-- desc, posts desc, term asc (byte order), the first $emerging_top_n kept. examples: up to 3
-- distinct titles (the body's first 80 characters when there is no title) of its W posts,
-- latest post first; category: the taxonomy's category whose W posts contain the term most
-- often (category_posts of them; ties by name), null when none does — what
-- `pulse taxonomy suggest` proposes. The terms of each post come from term_candidates,
-- categories from post_categories.
-- test unique: taxonomy, term
-- test unique: taxonomy, rank
-- Reference: docs/metrics.md#emerging_terms
WITH candidates AS (
    SELECT * FROM term_candidates
),
stats AS (
    SELECT
        taxonomy,
        term,
        count(DISTINCT CASE WHEN in_w THEN member_id END) AS authors,
        sum(CASE WHEN in_w THEN 1 ELSE 0 END) AS posts,
        count(DISTINCT CASE WHEN NOT in_w THEN member_id END) AS prev_authors
    FROM candidates
    GROUP BY taxonomy, term
),
ranked AS (
    SELECT
        taxonomy,
        term,
        authors,
        posts,
        prev_authors,
        CAST(authors - prev_authors AS DOUBLE) / greatest(prev_authors, 1) AS growth,
        row_number() OVER (
            PARTITION BY taxonomy
            ORDER BY authors DESC,
                     CAST(authors - prev_authors AS DOUBLE) / greatest(prev_authors, 1) DESC,
                     posts DESC,
                     term ASC
        ) AS rank
    FROM stats
    WHERE authors >= $emerging_min_authors
),
top AS (
    SELECT * FROM ranked WHERE rank <= $emerging_top_n
),
co_posts AS (
    SELECT c.taxonomy, c.term, pc.category, count(*) AS category_posts
    FROM candidates c
    JOIN top t ON t.taxonomy = c.taxonomy AND t.term = c.term
    JOIN post_categories pc
      ON pc.source = c.source AND pc.event_id = c.event_id AND pc.taxonomy = c.taxonomy
    WHERE c.in_w AND pc.category <> 'uncategorized'
    GROUP BY c.taxonomy, c.term, pc.category
),
best AS (
    SELECT
        taxonomy,
        term,
        category,
        category_posts,
        row_number() OVER (PARTITION BY taxonomy, term ORDER BY category_posts DESC, category ASC) AS n
    FROM co_posts
),
titles AS (
    SELECT c.taxonomy, c.term, c.example, max(c.occurred_at) AS latest
    FROM candidates c
    JOIN top t ON t.taxonomy = c.taxonomy AND t.term = c.term
    WHERE c.in_w AND c.example <> ''
    GROUP BY c.taxonomy, c.term, c.example
),
numbered_titles AS (
    SELECT
        taxonomy,
        term,
        example,
        row_number() OVER (PARTITION BY taxonomy, term ORDER BY latest DESC, example ASC) AS n
    FROM titles
),
examples AS (
    SELECT taxonomy, term, array_agg(example ORDER BY n) AS examples
    FROM numbered_titles
    WHERE n <= 3
    GROUP BY taxonomy, term
),
final AS (
    SELECT
        t.taxonomy,
        t.rank,
        t.term,
        t.authors,
        t.posts,
        t.prev_authors,
        t.growth,
        b.category,
        coalesce(b.category_posts, 0) AS category_posts,
        e.examples
    FROM top t
    LEFT JOIN best b ON b.taxonomy = t.taxonomy AND b.term = t.term AND b.n = 1
    LEFT JOIN examples e ON e.taxonomy = t.taxonomy AND e.term = t.term
)
SELECT * FROM final ORDER BY taxonomy, rank
