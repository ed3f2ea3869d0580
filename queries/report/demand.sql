-- report demand: demand categories (SPEC §4.6) by taxonomy, highest priority first — "what do
-- members need from us".
SELECT taxonomy, category, posts, members, share, prev_posts, growth, unanswered, unanswered_rate,
       priority, priority_rank
FROM demand_categories
WHERE community_id = $community AND as_of = $as_of
ORDER BY taxonomy, priority_rank
