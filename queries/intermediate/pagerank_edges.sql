-- pagerank_edges (helper): the weighted engagement graph of W for member PageRank (SPEC §4.4):
-- u → target_member_id for every comment, like, share and cite in W (u ≠ target), weight = count.
-- The PageRank itself is computed in Rust (src/models/pagerank.rs): iteration is not SQL's job.
SELECT member_id AS source, target_member_id AS target, sum(n) AS weight
FROM member_edges
WHERE community_id = $community
  AND event_date BETWEEN $w_scan_from AND $scan_to
  AND day >= $w_start AND day < $as_of
GROUP BY member_id, target_member_id
ORDER BY source, target
