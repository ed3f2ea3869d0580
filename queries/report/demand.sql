-- report demand: demand categories (SPEC §4.6) by taxonomy, the categories by priority and
-- `uncategorized` last — "what do members need from us"; what the taxonomy does not yet
-- cover follows it (report query `emerging`).
SELECT taxonomy, category, posts, members, share, prev_posts, growth, unanswered, unanswered_rate,
       priority, priority_rank
FROM demand_categories
WHERE community_id = $community AND as_of = $as_of
ORDER BY taxonomy, category = 'uncategorized', priority_rank
