//! `pulse generate`: deterministic, valid, and shaped like a real community.

use crate::common::Scratch;

#[test]
fn generated_community_is_valid_deterministic_and_realistic() {
    let s = Scratch::new();
    let gen = |name: &str| {
        let out = s.path(name);
        s.ok(&[
            "generate",
            "--members",
            "800",
            "--days",
            "90",
            "--communities",
            "2",
            "--seed",
            "11",
            "--end",
            "2026-11-23",
            "--out",
            out.to_str().unwrap(),
        ]);
        std::fs::read(out).unwrap()
    };
    let a = gen("a.ndjson");
    assert_eq!(a, gen("b.ndjson"), "same seed, same file");
    let out = s.ok(&["import", s.path("a.ndjson").to_str().unwrap()]);
    assert!(out.contains("quarantined 0"), "{out}");
    assert!(out.contains("duplicate 0"), "{out}");

    let counts: std::collections::HashMap<String, i64> = s
        .rows("SELECT event_type, count(*) FROM events GROUP BY 1")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
    for t in [
        "join", "leave", "post", "comment", "like", "share", "cite", "solution", "checkin",
        "attend", "view", "purchase", "refund",
    ] {
        assert!(
            counts.get(t).copied().unwrap_or(0) > 0,
            "no {t} events: {counts:?}"
        );
    }
    // Two communities, nothing on or after the end date.
    assert_eq!(
        s.scalar("SELECT count(DISTINCT community_id) FROM events"),
        "2"
    );
    assert_eq!(
        s.scalar(
            "SELECT count(*) FROM events WHERE occurred_at >= TIMESTAMP '2026-11-24T00:00:00Z'"
        ),
        "0"
    );
    // Some members never send join.
    let without_join: i64 = s
        .scalar("SELECT count(*) FROM (SELECT community_id, member_id FROM events GROUP BY 1, 2 HAVING sum(CASE WHEN event_type = 'join' THEN 1 ELSE 0 END) = 0)")
        .parse()
        .unwrap();
    assert!(without_join > 0);
    // Heavy tail: the top 10% of posters write well over a third of the posts.
    let share: f64 = s
        .scalar(
            "WITH p AS (SELECT member_id, count(*) AS n FROM events WHERE event_type = 'post' GROUP BY 1), \
             r AS (SELECT n, row_number() OVER (ORDER BY n DESC) AS rk, count(*) OVER () AS total FROM p) \
             SELECT CAST(sum(CASE WHEN rk <= total / 10 THEN n ELSE 0 END) AS DOUBLE) / sum(n) FROM r",
        )
        .parse()
        .unwrap();
    assert!(share > 0.35, "top-decile share {share}");
    // Comments answer real posts of other members, and some posts are never answered.
    assert_eq!(
        s.scalar(
            "SELECT count(*) FROM events c LEFT JOIN events p ON p.community_id = c.community_id AND p.content_id = c.parent_id AND p.event_type = 'post' \
             WHERE c.event_type = 'comment' AND (p.member_id IS NULL OR p.member_id <> c.target_member_id OR p.member_id = c.member_id)"
        ),
        "0"
    );
    let unanswered: i64 = s
        .scalar("SELECT count(*) FROM events p WHERE p.event_type = 'post' AND NOT EXISTS (SELECT 1 FROM events c WHERE c.event_type = 'comment' AND c.community_id = p.community_id AND c.parent_id = p.content_id)")
        .parse()
        .unwrap();
    assert!(unanswered > 0);
    // Chinese and English posts.
    assert!(
        s.scalar("SELECT count(*) FROM events WHERE event_type = 'post' AND title LIKE '%请教%'")
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert!(
        s.scalar("SELECT count(*) FROM events WHERE event_type = 'post' AND title LIKE '%about%'")
            .parse::<i64>()
            .unwrap()
            > 0
    );
}
