//! Member PageRank (SPEC §4.4), the one model that is not SQL: it iterates to a fixed point.
//!
//! The graph is W's comment/like/share/cite events u → target (u ≠ target), weight = count. Over
//! the n members with an edge, starting from 1/n each round computes
//! `pr'(v) = (1 − d)/n + d · (Σ_{u→v} pr(u) · w(u,v) / out(u) + dangling / n)`
//! where `dangling` is the rank of members with no outgoing edge, spread uniformly; d = 0.85.
//! It stops when Σ|pr' − pr| < 1e-10 or after 100 rounds.

use std::collections::BTreeMap;

pub const DAMPING: f64 = 0.85;
pub const TOLERANCE: f64 = 1e-10;
pub const MAX_ROUNDS: usize = 100;

/// PageRank of every member with an edge, sorted by member id. Edges are `(from, to, weight)`;
/// self-loops and non-positive weights are ignored.
pub fn pagerank(edges: &[(String, String, f64)]) -> Vec<(String, f64)> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (from, to, weight) in edges {
        if from != to && *weight > 0.0 {
            index.insert(from, 0);
            index.insert(to, 0);
        }
    }
    for (i, slot) in index.values_mut().enumerate() {
        *slot = i;
    }
    let n = index.len();
    if n == 0 {
        return Vec::new();
    }
    let links: Vec<(usize, usize, f64)> = edges
        .iter()
        .filter(|(from, to, weight)| from != to && *weight > 0.0)
        .map(|(from, to, weight)| (index[from.as_str()], index[to.as_str()], *weight))
        .collect();
    let mut out_weight = vec![0.0; n];
    for &(from, _, weight) in &links {
        out_weight[from] += weight;
    }
    let nf = n as f64;
    let mut rank = vec![1.0 / nf; n];
    let mut next = vec![0.0; n];
    for _ in 0..MAX_ROUNDS {
        let dangling: f64 = (0..n)
            .filter(|&i| out_weight[i] == 0.0)
            .map(|i| rank[i])
            .sum();
        let base = (1.0 - DAMPING) / nf + DAMPING * dangling / nf;
        next.iter_mut().for_each(|x| *x = base);
        for &(from, to, weight) in &links {
            next[to] += DAMPING * rank[from] * weight / out_weight[from];
        }
        let delta: f64 = rank.iter().zip(&next).map(|(a, b)| (a - b).abs()).sum();
        std::mem::swap(&mut rank, &mut next);
        if delta < TOLERANCE {
            break;
        }
    }
    index
        .into_iter()
        .map(|(member, i)| (member.to_string(), rank[i]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(list: &[(&str, &str, f64)]) -> Vec<(String, String, f64)> {
        list.iter()
            .map(|(a, b, w)| (a.to_string(), b.to_string(), *w))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_cycle_shares_rank_evenly() {
        let pr = pagerank(&edges(&[("a", "b", 1.0), ("b", "c", 1.0), ("c", "a", 1.0)]));
        assert!(pr.iter().all(|(_, r)| close(*r, 1.0 / 3.0)), "{pr:?}");
    }

    #[test]
    fn star_by_hand() {
        // b → a and c → a; a is dangling. By symmetry pr(b) = pr(c) = x, pr(a) = 1 − 2x, and
        // x = 0.05 + 0.85·(1 − 2x)/3  ⇒  x = (0.15 + 0.85)/(3 + 1.7) = 1/4.7.
        let pr = pagerank(&edges(&[("b", "a", 1.0), ("c", "a", 1.0)]));
        let x = 1.0 / 4.7;
        assert_eq!(
            pr.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert!(close(pr[1].1, x) && close(pr[2].1, x), "{pr:?}");
        assert!(close(pr[0].1, 1.0 - 2.0 * x), "{pr:?}");
        assert!(close(pr.iter().map(|(_, r)| r).sum::<f64>(), 1.0));
    }

    #[test]
    fn weights_split_outgoing_rank() {
        // a splits its rank 3:1 between b and c; both are dangling.
        let pr = pagerank(&edges(&[("a", "b", 3.0), ("a", "c", 1.0)]));
        let (a, b, c) = (pr[0].1, pr[1].1, pr[2].1);
        assert!(b > c && c > a, "{pr:?}");
        // Fixed point: a = 0.05 + 0.85·(b + c)/3 and b − c = 0.85·a·(3/4 − 1/4).
        assert!(close(a, 0.05 + 0.85 * (b + c) / 3.0), "{pr:?}");
        assert!(close(b - c, 0.85 * a * 0.5), "{pr:?}");
    }

    #[test]
    fn self_loops_and_empty_graphs() {
        assert!(pagerank(&[]).is_empty());
        assert!(pagerank(&edges(&[("a", "a", 4.0)])).is_empty());
    }
}
