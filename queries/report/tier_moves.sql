-- report tier_moves: how many members moved up, held, moved down or joined over W (tier at the
-- start of W against this as_of, tier_transitions).
SELECT
    coalesce(sum(members) FILTER (WHERE direction = 'up'), 0) AS up,
    coalesce(sum(members) FILTER (WHERE direction = 'held'), 0) AS held,
    coalesce(sum(members) FILTER (WHERE direction = 'down'), 0) AS down,
    coalesce(sum(members) FILTER (WHERE direction = 'joined'), 0) AS joined
FROM tier_transitions
WHERE community_id = $community AND as_of = $as_of
