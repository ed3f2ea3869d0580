-- post_categories (helper): SPEC §4.6's keyword rule, defined once. One row per post of W and W′
-- (answered_posts) and category it is in: a post is in every category of a taxonomy one of
-- whose lowercased keywords is a substring of lowercase(title + " " + body). A post in no
-- category of a taxonomy has no row for it (demand_categories counts it as `uncategorized`).
-- Read by demand_categories and emerging_terms (a term's most frequent category).
-- test unique: source, event_id, taxonomy, category
SELECT DISTINCT p.source, p.event_id, k.taxonomy, k.category
FROM answered_posts p
JOIN p_keywords k
  ON strpos(lower(coalesce(p.title, '') || ' ' || coalesce(p.body, '')), k.keyword) > 0
