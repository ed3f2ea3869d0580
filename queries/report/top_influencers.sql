-- report top_influencers: the most influential members (SPEC §4.4 member influence): PageRank
-- first, then reach; members without an edge (pagerank NULL) are not listed.
SELECT member_id, reach, interactions_received, pagerank
FROM member_influence
WHERE community_id = $community AND as_of = $as_of AND pagerank IS NOT NULL
ORDER BY pagerank DESC, reach DESC, member_id
LIMIT $limit
