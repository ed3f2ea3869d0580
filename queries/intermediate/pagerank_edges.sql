-- pagerank_edges (helper): the weighted engagement graph of W for member PageRank (SPEC §4.4):
-- u → target_member_id for every comment, like, share and cite in W (u ≠ target, targets
-- resolved by engagement_edges), weight = count.
-- The PageRank itself is computed in Rust (src/models/pagerank.rs): iteration is not SQL's job.
SELECT member_id AS source, target_member_id AS target, sum(n) AS weight
FROM engagement_edges
WHERE day >= $w_start
GROUP BY member_id, target_member_id
ORDER BY source, target
