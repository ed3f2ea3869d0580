-- report emerging: emerging topics (docs/metrics.md#emerging_terms) per taxonomy, the first
-- $limit of each — what members talk about that no keyword of the taxonomy covers. Read by
-- the report and by `pulse taxonomy suggest`.
SELECT taxonomy, rank, term, authors, posts, prev_authors, growth, category, category_posts, examples
FROM emerging_terms
WHERE community_id = $community AND as_of = $as_of AND rank <= $limit
ORDER BY taxonomy, rank
