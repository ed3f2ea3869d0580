//! `pulse run`: every metric checked against hand-computed values (SPEC §3, §4).
//!
//! Unless a test says otherwise: window_days = 10, as_of = 2026-11-11 in UTC, so
//! W = 2026-11-01 … 11-10 and W′ = 2026-10-22 … 10-31.

//!
//! The bodies take the engine backend as an argument; they run on the local engine, and one
//! differential test holds the Ballista backend to the local engine's tables.

use crate::common::{approx, checkins, e, Backend, Scratch};

/// `#[test]`s calling each body on the local engine. (The Ballista backend is checked once, by
/// [`ballista_computes_every_table_as_the_local_engine_does`], not per test: a cluster start
/// per test cost minutes of CI.)
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(#[test]
            fn $name() {
                super::$name(super::Backend::Local)
            })*
        }
    };
}

on_every_backend!(
    worked_example_activity_score_is_3_88,
    worked_example_community_influence_is_500_24,
    tiers_follow_their_rules_in_order,
    points_cap_per_local_day_and_as_of_is_exclusive,
    percentile_normalization_shares_the_lowest_rank_on_ties,
    demand_categories_with_unanswered_at_the_48h_edges,
    cohorts_use_local_months_and_mark_partial_periods,
    an_empty_community_produces_no_rows,
    late_events_refresh_only_their_month_and_reruns_replace,
    kpis_revenue_by_currency_and_ranking_ties,
    communities_override_defaults_and_weekly_cohorts,
    engagement_without_a_target_counts_for_the_contents_author
);

const WINDOW_10: &str = "[defaults]\nwindow_days = 10\n";

fn worked_example_activity_score_is_3_88(backend: Backend) {
    let s = Scratch::on(backend);
    s.config(WINDOW_10);
    let mut events = vec![e("m", "join", "2026-10-20T09:00:00Z")];
    for d in 1..=5 {
        events.push(
            e("m", "post", &format!("2026-11-{d:02}T10:00:00Z")).set("content_id", format!("p{d}")),
        );
    }
    for d in 6..=8 {
        events.push(
            e("m", "like", &format!("2026-11-{d:02}T10:00:00Z"))
                .to("x")
                .set("content_id", "elsewhere"),
        );
    }
    for o in ["o1", "o2", "o3", "o4"] {
        events.push(
            e(o, "like", "2026-11-02T12:00:00Z")
                .to("m")
                .set("content_id", "p1"),
        );
    }
    s.import(&events);
    s.compute("2026-11-11");

    let m = s.member("member_activity", "m");
    assert_eq!(
        (
            m["participation"].as_str(),
            m["interaction"].as_str(),
            m["contribution"].as_str()
        ),
        ("5", "3", "4")
    );
    assert!(approx(&m["retention"], 0.8), "{m:?}");
    assert!(approx(&m["activity_score"], 3.88), "{m:?}");
    assert_eq!(m["active_days"], "8");
    assert!(
        approx(&m["points"], 53.0),
        "5 posts × 10 + 3 likes × 1: {m:?}"
    );
    assert_eq!(m["tier"], "active");
    assert_eq!(m["first_seen_at"], "2026-10-20T09:00:00Z");
    assert_eq!(m["last_active_at"], "2026-11-08T10:00:00Z");

    // o1 was first seen on Nov 2: eligible days are Nov 2 … Nov 10 (9).
    let o1 = s.member("member_activity", "o1");
    assert!(approx(&o1["retention"], 1.0 / 9.0), "{o1:?}");
    assert!(approx(&o1["activity_score"], 0.3 + 0.1 / 9.0), "{o1:?}");
    assert_eq!(o1["tier"], "new");

    let inf = s.member("member_influence", "m");
    assert_eq!(
        (inf["reach"].as_str(), inf["interactions_received"].as_str()),
        ("4", "4")
    );
    assert!(!inf["pagerank"].is_empty());
    // Only seen members get rows: x (a target with no events of its own) does not.
    assert!(s
        .records("SELECT * FROM member_influence WHERE member_id = 'x'")
        .is_empty());
}

/// SPEC §2 "Author resolution": engagement without target_member_id counts for the author of
/// the content it is about (parent_id for comments, content_id otherwise): the earliest post or
/// comment with that content_id before as_of, even one that arrives after the engagement or in
/// another month. Given targets are used as given; resolved self-engagement and unknown content
/// count for nobody.
fn engagement_without_a_target_counts_for_the_contents_author(backend: Backend) {
    let s = Scratch::on(backend);
    s.config(WINDOW_10);
    let events = vec![
        // a's post p1 is from October (W′, another UTC month): a like and a share in W without
        // a target count for a; so does a comment replying to it (parent_id p1).
        e("a", "post", "2026-10-25T10:00:00Z").set("content_id", "p1"),
        e("x", "like", "2026-11-02T10:00:00Z").set("content_id", "p1"),
        e("y", "share", "2026-11-03T10:00:00Z").set("content_id", "p1"),
        e("y", "comment", "2026-11-03T11:00:00Z")
            .set("content_id", "c1")
            .set("parent_id", "p1"),
        // An empty target is no target.
        e("z", "cite", "2026-11-04T10:00:00Z")
            .set("content_id", "p1")
            .set("target_member_id", ""),
        // b's post p2 arrives after the like about it (Nov 6 vs Nov 5): still b's.
        e("x", "like", "2026-11-05T10:00:00Z").set("content_id", "p2"),
        e("b", "post", "2026-11-06T10:00:00Z").set("content_id", "p2"),
        // Two events carry content_id p3: the earliest (by occurred_at, then received_at) is its
        // author. c posted at 09:00 received later; d at 09:00 received earlier: d wins.
        e("c", "post", "2026-11-07T09:00:00Z")
            .set("content_id", "p3")
            .set("received_at", "2026-11-07T09:05:00Z"),
        e("d", "comment", "2026-11-07T09:00:00Z")
            .set("content_id", "p3")
            .set("received_at", "2026-11-07T09:01:00Z"),
        e("x", "like", "2026-11-08T10:00:00Z").set("content_id", "p3"),
        // A given target is used as given, even when the content's author is someone else.
        e("x", "like", "2026-11-08T11:00:00Z")
            .set("content_id", "p1")
            .to("b"),
        // Resolved to the actor: self-engagement, for nobody.
        e("a", "like", "2026-11-09T10:00:00Z").set("content_id", "p1"),
        // Content nobody posted, and a post after as_of: no target.
        e("x", "like", "2026-11-09T11:00:00Z").set("content_id", "ghost"),
        e("x", "like", "2026-11-10T10:00:00Z").set("content_id", "p4"),
        e("e", "post", "2026-11-11T00:00:00Z").set("content_id", "p4"),
    ];
    s.import(&events);
    s.compute("2026-11-11");

    let contribution = |m: &str| s.member("member_activity", m)["contribution"].clone();
    // a: like (x) + share (y) + cite (z) = 3; the comment is an interaction, not C.
    assert_eq!(contribution("a"), "3");
    // b: the late-arriving post's like (x) + the given-target like (x) = 2.
    assert_eq!(contribution("b"), "2");
    assert_eq!(contribution("d"), "1");
    assert_eq!(contribution("c"), "0");

    let influence = |m: &str| {
        let r = s.member("member_influence", m);
        (r["reach"].clone(), r["interactions_received"].clone())
    };
    // a: x (like), y (share + comment), z (cite): 3 members, 4 events.
    assert_eq!(influence("a"), ("3".into(), "4".into()));
    assert_eq!(influence("b"), ("1".into(), "2".into()));
    assert_eq!(influence("d"), ("1".into(), "1".into()));
    assert_eq!(influence("c"), ("0".into(), "0".into()));
    assert!(s.member("member_influence", "c")["pagerank"].is_empty());
    assert!(!s.member("member_influence", "d")["pagerank"].is_empty());
    // e's post is on as_of (not seen); nobody got the ghost like; a's own like is nobody's.
    assert!(s
        .records("SELECT * FROM member_influence WHERE member_id = 'e'")
        .is_empty());
    assert_eq!(
        s.scalar("SELECT sum(interactions_received) FROM member_influence"),
        "7"
    );
}

fn worked_example_community_influence_is_500_24(backend: Backend) {
    let s = Scratch::on(backend);
    s.config(WINDOW_10);
    let mut events = Vec::new();
    for i in 0..1000 {
        let m = format!("m{i:04}");
        events.push(e(&m, "join", "2026-10-01T08:00:00Z"));
        if i < 400 {
            events.push(
                e(&m, "like", "2026-11-05T08:00:00Z")
                    .to("host")
                    .set("content_id", "welcome"),
            );
        } else if i < 600 {
            events.push(e(&m, "checkin", "2026-11-05T08:00:00Z"));
        }
    }
    s.import(&events);
    s.compute("2026-11-11");
    let row = &s.records("SELECT * FROM community_influence")[0];
    assert_eq!(
        (row["size_total"].as_str(), row["members"].as_str()),
        ("1000", "1000")
    );
    assert!(
        approx(&row["activity_rate"], 0.6) && approx(&row["participation_rate"], 0.4),
        "{row:?}"
    );
    assert!(approx(&row["influence"], 500.24), "{row:?}");
}

fn tiers_follow_their_rules_in_order(backend: Backend) {
    let s = Scratch::on(backend);
    s.config(WINDOW_10);
    let mut ev = Vec::new();
    let join = |m: &str| e(m, "join", "2026-10-01T08:00:00Z");
    // banned beats everything; a later unban lifts it.
    ev.push(join("banned"));
    ev.extend(checkins("banned", "2026-11", 1..=9));
    ev.push(e("banned", "ban", "2026-11-05T13:00:00Z"));
    ev.push(join("unbanned"));
    ev.push(e("unbanned", "ban", "2026-10-25T08:00:00Z"));
    ev.push(e("unbanned", "unban", "2026-10-28T08:00:00Z"));
    ev.extend(checkins("unbanned", "2026-11", 1..=2));
    // left, and left then rejoined.
    ev.push(join("left"));
    ev.extend(checkins("left", "2026-11", 1..=9));
    ev.push(e("left", "leave", "2026-11-10T13:00:00Z"));
    ev.push(join("rejoined"));
    ev.push(e("rejoined", "leave", "2026-10-10T08:00:00Z"));
    ev.push(e("rejoined", "join", "2026-10-15T08:00:00Z"));
    ev.extend(checkins("rejoined", "2026-11", [3]));
    // contributor (C ≥ 10 and a post) beats active; without a post it is only active.
    ev.push(join("contributor"));
    ev.push(e("contributor", "post", "2026-11-01T09:00:00Z").set("content_id", "cp"));
    ev.extend(checkins("contributor", "2026-11", 1..=9));
    ev.push(join("no_post"));
    ev.extend(checkins("no_post", "2026-11", 1..=8));
    for i in 0..10 {
        let fan = format!("fan{i}");
        ev.push(
            e(&fan, "like", "2026-11-02T09:00:00Z")
                .to("contributor")
                .set("content_id", "cp"),
        );
        ev.push(
            e(&fan, "share", "2026-11-02T09:30:00Z")
                .to("no_post")
                .set("content_id", "np"),
        );
    }
    // active at exactly 8 days; 7 is not enough.
    ev.push(join("active"));
    ev.extend(checkins("active", "2026-11", 1..=8));
    ev.push(join("seven_days"));
    ev.extend(checkins("seven_days", "2026-11", 1..=7));
    // new (first seen in W), unless already active.
    ev.extend(checkins("newbie", "2026-11", 3..=5));
    ev.extend(checkins("new_but_active", "2026-11", 2..=9));
    // at_risk: 8 days in W′ and fewer than half as many in W.
    ev.push(join("at_risk"));
    ev.extend(checkins("at_risk", "2026-10", 22..=29));
    ev.extend(checkins("at_risk", "2026-11", 1..=3));
    ev.push(join("holding_on"));
    ev.extend(checkins("holding_on", "2026-10", 22..=29));
    ev.extend(checkins("holding_on", "2026-11", 1..=4));
    // dormant: seen before W, nothing in W (with and without a join).
    ev.push(join("dormant"));
    ev.extend(checkins("dormant_no_join", "2026-10", [5]));
    s.import(&ev);
    s.compute("2026-11-11");

    let expect = [
        ("banned", "banned"),
        ("unbanned", "regular"),
        ("left", "left"),
        ("rejoined", "regular"),
        ("contributor", "contributor"),
        ("no_post", "active"),
        ("active", "active"),
        ("seven_days", "regular"),
        ("newbie", "new"),
        ("new_but_active", "active"),
        ("fan0", "new"),
        ("at_risk", "at_risk"),
        ("holding_on", "regular"),
        ("dormant", "dormant"),
        ("dormant_no_join", "dormant"),
    ];
    for (member, tier) in expect {
        assert_eq!(
            s.member("member_activity", member)["tier"],
            tier,
            "{member}"
        );
    }
    assert_eq!(
        s.member("member_activity", "contributor")["contribution"],
        "10"
    );
    // Banned and left members are not ranked; the others with a score are.
    let ranked: Vec<String> = s
        .rows("SELECT member_id FROM ranked_members ORDER BY rank")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert!(!ranked.contains(&"banned".to_string()) && !ranked.contains(&"left".to_string()));
    assert!(ranked.contains(&"unbanned".to_string()) && ranked.contains(&"rejoined".to_string()));
    assert!(
        !ranked.contains(&"dormant".to_string()),
        "a zero score is not ranked"
    );
}

fn points_cap_per_local_day_and_as_of_is_exclusive(backend: Backend) {
    let s = Scratch::on(backend);
    s.config("[defaults]\nwindow_days = 10\ntimezone = \"Asia/Shanghai\"\n");
    let mut ev = vec![e("p", "join", "2026-10-01T00:00:00Z")];
    for i in 0..35 {
        ev.push(
            e("p", "like", &format!("2026-11-03T02:{i:02}:00Z"))
                .to("q")
                .set("content_id", "qc"),
        );
    }
    // 00:30, 23:30 and 18:00 on Nov 4 local, in two UTC partitions (Nov 3 and 4): one counted
    // check-in; 00:30 on Nov 5 local (another).
    ev.push(e("p", "checkin", "2026-11-03T16:30:00Z"));
    ev.push(e("p", "checkin", "2026-11-04T15:30:00Z"));
    ev.push(e("p", "checkin", "2026-11-04T10:00:00Z"));
    ev.push(e("p", "checkin", "2026-11-04T16:30:00Z"));
    ev.push(e("p", "post", "2026-11-06T01:00:00Z"));
    ev.push(e("p", "post", "2026-11-06T02:00:00Z"));
    // One µs before local midnight of as_of counts; midnight itself and later do not.
    ev.push(e("p", "checkin", "2026-11-10T15:59:59.999999Z"));
    ev.push(e("p", "checkin", "2026-11-10T16:00:00Z"));
    ev.push(e("p", "post", "2026-12-01T00:00:00Z"));
    s.import(&ev);
    s.compute("2026-11-11");
    let p = s.member("member_activity", "p");
    // likes min(35, 30)·1 + check-ins 3 local days · 5 + posts 2 · 10.
    assert!(approx(&p["points"], 30.0 + 15.0 + 20.0), "{p:?}");
    assert_eq!(
        p["participation"], "7",
        "4 check-in events before the last day + 1 on it + 2 posts"
    );
    assert_eq!(p["interaction"], "35");
    assert_eq!(p["active_days"], "5", "Nov 3, 4, 5, 6 and 10 local");
    assert_eq!(p["last_active_at"], "2026-11-10T15:59:59.999999Z");
}

fn percentile_normalization_shares_the_lowest_rank_on_ties(backend: Backend) {
    let s = Scratch::on(backend);
    s.config(
        "[defaults]\nwindow_days = 10\nnormalization = \"percentile\"\n\
         activity_weights = { participation = 1.0, interaction = 0.0, contribution = 0.0, retention = 0.0 }\n",
    );
    let post = |m: &str, day: u32| e(m, "post", &format!("2026-11-{day:02}T10:00:00Z"));
    s.import(&[
        e("a", "view", "2026-11-01T10:00:00Z"),
        post("d", 1),
        post("b", 1),
        post("b", 2),
        post("c", 3),
        post("c", 4),
        post("solo", 2).set("community_id", "c2"),
    ]);
    s.compute("2026-11-11");
    let score = |m: &str| {
        s.records(&format!("SELECT activity_score, participation FROM member_activity WHERE member_id = '{m}' AND community_id = 'c1'"))[0].clone()
    };
    assert!(approx(&score("a")["activity_score"], 0.0));
    assert!(approx(&score("d")["activity_score"], 1.0 / 3.0));
    assert!(approx(&score("b")["activity_score"], 2.0 / 3.0));
    assert!(approx(&score("c")["activity_score"], 2.0 / 3.0));
    assert_eq!(score("c")["participation"], "2", "stored P stays raw");
    // One member: percent_rank is 0.
    let solo = s.records("SELECT activity_score FROM member_activity WHERE community_id = 'c2'");
    assert!(approx(&solo[0]["activity_score"], 0.0));
}

fn demand_categories_with_unanswered_at_the_48h_edges(backend: Backend) {
    let s = Scratch::on(backend);
    s.config(WINDOW_10);
    let post = |m: &str, id: &str, at: &str, title: &str| {
        e(m, "post", at)
            .set("content_id", id)
            .set("title", title)
            .set("body", "")
    };
    let reply = |m: &str, post: &str, at: &str| {
        e(m, "comment", at)
            .set("parent_id", post)
            .set("content_id", format!("re-{post}-{m}"))
    };
    s.import(&[
        post("a", "p0", "2026-10-25T10:00:00Z", "Which COURSE first?"),
        post("a", "p1", "2026-11-02T10:00:00Z", "Which course first?"),
        reply("b", "p1", "2026-11-04T10:00:00Z"), // exactly 48 h: answered
        post("a", "p2", "2026-11-02T11:00:00Z", "Another course"),
        reply("b", "p2", "2026-11-04T11:00:01Z"), // one second late
        post("a", "p3", "2026-11-03T10:00:00Z", "A course for me"),
        reply("a", "p3", "2026-11-03T11:00:00Z"), // the author's own reply does not count
        post("a", "p4", "2026-11-09T23:00:00Z", "Last course"),
        reply("b", "p4", "2026-11-11T00:00:00Z"), // at as_of: not seen by this run
        post(
            "b",
            "p5",
            "2026-11-05T10:00:00Z",
            "Please help, I cannot fix this error",
        ),
        reply("c", "p5", "2026-11-05T12:00:00Z"),
    ]);
    s.compute("2026-11-11");
    let rows = s.records("SELECT * FROM demand_categories ORDER BY taxonomy, priority_rank");
    let row = |tax: &str, cat: &str| {
        rows.iter()
            .find(|r| r["taxonomy"] == tax && r["category"] == cat)
            .unwrap()
            .clone()
    };
    let learn = row("needs", "学习需求");
    assert_eq!(
        (
            learn["posts"].as_str(),
            learn["members"].as_str(),
            learn["unanswered"].as_str()
        ),
        ("4", "1", "3")
    );
    assert!(
        approx(&learn["unanswered_rate"], 0.75) && approx(&learn["priority"], 1.75),
        "{learn:?}"
    );
    assert!(
        approx(&learn["share"], 0.8) && learn["prev_posts"] == "1" && approx(&learn["growth"], 3.0),
        "{learn:?}"
    );
    assert_eq!(learn["priority_rank"], "1");
    let solve = row("needs", "解决问题需求");
    assert_eq!(
        (
            solve["posts"].as_str(),
            solve["unanswered"].as_str(),
            solve["priority_rank"].as_str()
        ),
        ("1", "0", "2")
    );
    assert!(approx(&solve["growth"], 1.0) && approx(&solve["priority"], 1.0));
    // Zero rows still appear, ranked by category name in byte order.
    assert_eq!(row("needs", "uncategorized")["priority_rank"], "3");
    assert_eq!(row("needs", "社交需求")["priority_rank"], "4");
    assert_eq!(row("needs", "社交需求")["posts"], "0");
    let other = row("content", "uncategorized");
    assert_eq!(
        (
            other["posts"].as_str(),
            other["members"].as_str(),
            other["unanswered"].as_str()
        ),
        ("5", "2", "3")
    );
    assert!(
        approx(&other["priority"], 3.2)
            && approx(&other["share"], 1.0)
            && approx(&other["growth"], 4.0)
    );
    assert_eq!(
        rows.len(),
        8,
        "3 categories + uncategorized in each of the 2 default taxonomies"
    );
}

fn cohorts_use_local_months_and_mark_partial_periods(backend: Backend) {
    let s = Scratch::on(backend);
    s.config("[defaults]\ntimezone = \"Asia/Shanghai\"\n");
    s.import(&[
        // 01:00 on Oct 1 in Shanghai (still Sep 30 in UTC): an October cohort.
        e("m1", "join", "2026-09-30T17:00:00Z"),
        e("m1", "checkin", "2026-10-31T16:30:00Z"), // Nov 1, 00:30 local: offset 1
        // 23:00 on Sep 30 local: a September cohort.
        e("m2", "join", "2026-09-30T15:00:00Z"),
        e("m2", "checkin", "2026-09-30T15:30:00Z"),
        e("m2", "checkin", "2026-11-14T15:00:00Z"),
        // No join: the cohort is the month first seen.
        e("m3", "checkin", "2026-10-10T12:00:00Z"),
        // Only views: in the cohort, never retained.
        e("m4", "join", "2026-10-05T12:00:00Z"),
        e("m4", "view", "2026-11-02T12:00:00Z"),
    ]);
    s.compute("2026-11-15");
    let sql = "SELECT CAST(cohort_start AS VARCHAR) AS c, period_offset AS k, cohort_size AS n, retained AS r, is_partial AS p \
               FROM retention_cohorts WHERE as_of = DATE '{D}' ORDER BY cohort_start, period_offset";
    let table = |d: &str| -> Vec<String> {
        s.records(&sql.replace("{D}", d))
            .iter()
            .map(|r| format!("{} {} {} {} {}", r["c"], r["k"], r["n"], r["r"], r["p"]))
            .collect()
    };
    assert_eq!(
        table("2026-11-15"),
        [
            "2026-09-01 0 1 1 false",
            "2026-09-01 1 1 0 false",
            "2026-09-01 2 1 1 true",
            "2026-10-01 0 3 1 false",
            "2026-10-01 1 3 1 true",
        ]
    );
    // As of Nov 1, October ended the day before: complete, and November does not appear yet.
    s.compute("2026-11-01");
    assert_eq!(
        table("2026-11-01"),
        [
            "2026-09-01 0 1 1 false",
            "2026-09-01 1 1 0 false",
            "2026-10-01 0 3 1 false"
        ]
    );
    let rate = s.records("SELECT retention_rate FROM retention_cohorts WHERE as_of = DATE '2026-11-15' AND cohort_start = DATE '2026-10-01' AND period_offset = 0");
    assert!(approx(&rate[0]["retention_rate"], 1.0 / 3.0));
}

fn an_empty_community_produces_no_rows(backend: Backend) {
    let s = Scratch::on(backend);
    s.config("[defaults]\nwindow_days = 10\n[[communities]]\nid = \"c1\"\n[[communities]]\nid = \"quiet\"\n");
    s.import(&[e("m", "post", "2026-11-02T10:00:00Z")]);
    let runs = s.compute("2026-11-11");
    let quiet = runs.iter().find(|r| r.community == "quiet").unwrap();
    let tables: Vec<&str> = quiet.tables.iter().map(|(t, _)| *t).collect();
    for table in [
        "demand_categories",
        "retention_cohorts",
        "community_influence",
        "kpis",
        "member_activity",
        "member_influence",
        "ranked_members",
    ] {
        assert!(tables.contains(&table), "{table} not written: {tables:?}");
    }
    assert!(
        quiet.tables.iter().all(|(_, rows)| *rows == 0),
        "{:?}",
        quiet.tables
    );
    // Before its first event, c1 is empty too.
    let runs = s.compute_only("2026-11-02", Some("c1"));
    assert!(
        runs[0].tables.contains(&("member_activity", 0)),
        "{:?}",
        runs[0].tables
    );
    assert_eq!(
        s.scalar("SELECT count(*) FROM member_activity WHERE as_of = DATE '2026-11-11'"),
        "1"
    );
    let err = s.pulse(&["run", "--community", "nobody"]);
    assert!(String::from_utf8_lossy(&err.stderr)
        .contains("`nobody` is neither configured nor in the lake"));
}

fn late_events_refresh_only_their_month_and_reruns_replace(backend: Backend) {
    let s = Scratch::on(backend);
    s.config(WINDOW_10);
    s.import(&[
        e("m", "checkin", "2026-10-25T10:00:00Z"), // October: a second rollup month
        e("m", "post", "2026-11-02T10:00:00Z"),
        e("m", "post", "2026-11-05T10:00:00Z"),
        e("n", "like", "2026-11-06T10:00:00Z").to("m"),
    ]);
    let first = &s.compute("2026-11-11")[0];
    assert_eq!((first.rollups.refreshed, first.rollups.partitions), (2, 2));
    assert_eq!(s.member("member_activity", "m")["participation"], "2");
    // A late event for Nov 3 arrives; the same as_of is run again.
    s.import(&[e("m", "post", "2026-11-03T10:00:00Z")]);
    let second = &s.compute("2026-11-11")[0];
    assert_eq!(
        (second.rollups.refreshed, second.rollups.partitions),
        (1, 2)
    );
    assert_eq!(s.member("member_activity", "m")["participation"], "3");
    assert_eq!(
        s.scalar("SELECT count(*) FROM member_activity"),
        "2",
        "replaced, not appended"
    );
    let third = &s.compute("2026-11-11")[0];
    assert_eq!((third.rollups.refreshed, third.rollups.partitions), (0, 2));
}

fn kpis_revenue_by_currency_and_ranking_ties(backend: Backend) {
    let s = Scratch::on(backend);
    s.config("[defaults]\nwindow_days = 10\ntop_n = 3\nexclude_members = [\"staff\"]\n");
    let buy = |m: &str, kind: &str, at: &str, amount: i64, cur: &str| {
        e(m, kind, at)
            .set("amount_minor", amount)
            .set("currency", cur)
    };
    s.import(&[
        buy("a", "purchase", "2026-11-02T10:00:00Z", 19900, "CNY"),
        buy("a", "refund", "2026-11-03T10:00:00Z", 19900, "CNY"),
        buy("b", "purchase", "2026-11-04T10:00:00Z", 4900, "USD"),
        buy("c", "purchase", "2026-10-25T10:00:00Z", 9900, "CNY"),
        e("staff", "post", "2026-11-02T10:00:00Z"),
        e("staff", "post", "2026-11-03T10:00:00Z"),
        e("x", "post", "2026-11-02T10:00:00Z"),
        e("w", "post", "2026-11-02T10:00:00Z"),
        e("v", "post", "2026-11-02T10:00:00Z"),
        e("v", "like", "2026-11-02T11:00:00Z").to("w"),
    ]);
    s.compute("2026-11-11");
    let k: std::collections::HashMap<String, (String, String)> = s
        .records("SELECT metric, value, prev_value FROM kpis")
        .into_iter()
        .map(|r| {
            (
                r["metric"].clone(),
                (r["value"].clone(), r["prev_value"].clone()),
            )
        })
        .collect();
    let kpi = |m: &str| {
        k.get(m)
            .unwrap_or_else(|| panic!("no kpi {m}: {k:?}"))
            .clone()
    };
    assert!(
        approx(&kpi("revenue_minor:CNY").0, 0.0) && approx(&kpi("revenue_minor:CNY").1, 9900.0)
    );
    assert!(
        approx(&kpi("revenue_minor:USD").0, 4900.0) && approx(&kpi("revenue_minor:USD").1, 0.0)
    );
    assert!(approx(&kpi("purchasers:CNY").0, 1.0) && approx(&kpi("arppu_minor:USD").0, 4900.0));
    assert_eq!(kpi("arppu_minor:USD").1, "", "no payers in W′: no ARPPU");
    assert!(approx(&kpi("purchasers").0, 2.0) && approx(&kpi("purchasers").1, 1.0));
    assert!(approx(&kpi("posts").0, 5.0) && approx(&kpi("likes").0, 1.0));
    assert!(
        approx(&kpi("members").0, 7.0) && approx(&kpi("members").1, 1.0),
        "{k:?}"
    );
    assert!(approx(&kpi("new_members").0, 6.0) && approx(&kpi("new_members").1, 1.0));
    assert!(
        approx(&kpi("active_members").0, 4.0),
        "staff, x, w, v active; a, b only paid: {k:?}"
    );
    // v (post + like) first; w and x tie on score and points, so member_id decides; staff is
    // excluded; top_n = 3 cuts the rest.
    let ranked: Vec<Vec<String>> =
        s.rows("SELECT rank, member_id FROM ranked_members ORDER BY rank");
    assert_eq!(
        ranked,
        [["1", "v"], ["2", "w"], ["3", "x"]].map(|r| r.map(String::from).to_vec())
    );
}

fn communities_override_defaults_and_weekly_cohorts(backend: Backend) {
    let s = Scratch::on(backend);
    s.config(
        "[defaults]\nwindow_days = 10\n\
         [[communities]]\nid = \"c1\"\n\
         [[communities]]\nid = \"c2\"\nwindow_days = 3\ncohort_grain = \"week\"\npoints = { checkin = { weight = 7, daily_cap = 2 } }\n",
    );
    let mut ev = Vec::new();
    for c in ["c1", "c2"] {
        // Mon 2026-11-02 … Tue 2026-11-10: a check-in a day, two on Nov 9.
        for d in 2..=10 {
            ev.push(e("m", "checkin", &format!("2026-11-{d:02}T12:00:00Z")).set("community_id", c));
        }
        ev.push(e("m", "checkin", "2026-11-09T13:00:00Z").set("community_id", c));
        ev.push(e("m", "join", "2026-10-28T12:00:00Z").set("community_id", c)); // Wednesday
    }
    s.import(&ev);
    s.compute("2026-11-11");
    let row = |c: &str| {
        s.records(&format!(
            "SELECT * FROM member_activity WHERE community_id = '{c}'"
        ))[0]
            .clone()
    };
    // c1: W = Nov 1…10: 10 check-ins on 9 days, 5 points each with a daily cap of 1.
    assert_eq!(row("c1")["active_days"], "9");
    assert!(approx(&row("c1")["points"], 45.0));
    // c2: W = Nov 8…10: 4 check-ins on 3 days, 7 points each, cap 2 a day.
    assert_eq!(row("c2")["active_days"], "3");
    assert_eq!(row("c2")["participation"], "4");
    assert!(approx(&row("c2")["points"], 28.0));
    assert!(approx(&row("c2")["retention"], 1.0));
    // Weekly cohorts for c2: joined in the week of Mon Oct 26; active weeks Nov 2 and Nov 9
    // (offsets 1 and 2, the latter partial: it ends Nov 16, after as_of), none in week 0.
    let cohorts: Vec<String> = s
        .records("SELECT CAST(cohort_start AS VARCHAR) AS c, period_offset AS k, retained AS r, is_partial AS p FROM retention_cohorts WHERE community_id = 'c2' ORDER BY k")
        .iter()
        .map(|r| format!("{} {} {} {}", r["c"], r["k"], r["r"], r["p"]))
        .collect();
    assert_eq!(
        cohorts,
        [
            "2026-10-26 0 0 false",
            "2026-10-26 1 1 false",
            "2026-10-26 2 1 true"
        ]
    );
}

/// The whole-history reads (first seen, last active, retention cohorts) take the months before
/// as_of's month from the monthly rollup and only that month's days from the daily one. On a
/// generated community they equal the same figures computed from the raw events, for an as_of
/// on the first of a month and one mid-month (with events after it in the lake), in a zone
/// east and one west of UTC — and after the active types change (the monthly rollup depends on
/// them, so it is recomputed).
#[test]
fn whole_history_figures_match_the_raw_events_at_and_after_a_month_start() {
    let s = Scratch::new();
    let zones = "[[communities]]\nid = \"python-camp\"\ntimezone = \"Asia/Shanghai\"\n\
                 [[communities]]\nid = \"data-circle\"\ntimezone = \"America/New_York\"\n";
    s.import_generated(300, 100, "2026-11-20");
    let all_active = "'post','comment','like','share','cite','solution','checkin','attend'";
    for (defaults, active) in [
        ("", all_active),
        ("[defaults]\nactive_event_types = [\"post\"]\n", "'post'"),
    ] {
        s.config(&format!("{defaults}{zones}"));
        for as_of in ["2026-11-01", "2026-11-17"] {
            s.compute(as_of);
            for (community, tz) in [
                ("python-camp", "Asia/Shanghai"),
                ("data-circle", "America/New_York"),
            ] {
                let raw = format!(
                    "WITH ev AS (SELECT member_id, event_type, occurred_at, local_date(occurred_at, '{tz}') AS day \
                       FROM events WHERE community_id = '{community}' AND local_date(occurred_at, '{tz}') < DATE '{as_of}')"
                );
                let mut expected = s.rows(&format!(
                    "{raw} SELECT member_id, min(occurred_at), max(CASE WHEN event_type IN ({active}) THEN occurred_at END) \
                     FROM ev GROUP BY member_id"
                ));
                let mut got = s.rows(&format!(
                    "SELECT member_id, first_seen_at, last_active_at FROM member_activity \
                     WHERE community_id = '{community}' AND as_of = DATE '{as_of}'"
                ));
                expected.sort();
                got.sort();
                assert!(
                    expected.len() > 100,
                    "{community} {as_of}: {} members",
                    expected.len()
                );
                assert_eq!(
                    got, expected,
                    "{community} {as_of} active {active}: first seen, last active"
                );
                // SPEC §4.5 from the raw events: cohort = the local month of the first join, else
                // of the first event; retained = cohort members active in cohort month + k.
                let month = |d: &str| {
                    format!("CAST(date_part('year', {d}) * 12 + date_part('month', {d}) AS BIGINT)")
                };
                let mut expected = s.rows(&format!(
                    "{raw}, cohorts AS (SELECT member_id, {c} AS cohort FROM ev GROUP BY member_id), \
                     active AS (SELECT DISTINCT member_id, {m} AS period FROM ev WHERE event_type IN ({active})) \
                     SELECT c.cohort, a.period - c.cohort, count(*) FROM cohorts c JOIN active a \
                     ON a.member_id = c.member_id AND a.period >= c.cohort GROUP BY 1, 2",
                    c = month("coalesce(min(CASE WHEN event_type = 'join' THEN day END), min(day))"),
                    m = month("day"),
                ));
                let mut got = s.rows(&format!(
                    "SELECT {c}, period_offset, retained FROM retention_cohorts \
                     WHERE community_id = '{community}' AND as_of = DATE '{as_of}' AND retained > 0",
                    c = month("cohort_start"),
                ));
                expected.sort();
                got.sort();
                assert!(expected.len() >= 3, "{community} {as_of}: {expected:?}");
                assert_eq!(
                    got, expected,
                    "{community} {as_of} active {active}: retention"
                );
            }
        }
    }
}

/// The Ballista backend (an in-process cluster) computes every lake table — metrics and
/// rollups — exactly as the local engine does, on the same generated community.
#[cfg(feature = "ballista")]
#[test]
fn ballista_computes_every_table_as_the_local_engine_does() {
    let local = Scratch::on(Backend::Local);
    let ballista = Scratch::on(Backend::BallistaStandalone);
    let config = "[defaults]\nwindow_days = 14\n";
    local.config(config);
    ballista.config(config);
    // One import (received_at is the moment of import), the same events in both lakes.
    local.import_generated(120, 45, "2026-11-11");
    copy_dir(&local.lake(), &ballista.lake());
    for s in [&local, &ballista] {
        s.run("2026-11-11");
    }
    let tables = local.rows(
        "SELECT table_name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> 'events' ORDER BY 1",
    );
    assert!(tables.len() >= 10, "{tables:?}");
    let sorted = |s: &Scratch, table: &str| {
        let mut rows = s.rows(&format!("SELECT * FROM {table}"));
        rows.sort();
        rows
    };
    for table in tables.iter().map(|r| r[0].as_str()) {
        let (a, b) = (sorted(&local, table), sorted(&ballista, table));
        assert!(
            !a.is_empty(),
            "{table} is empty: the comparison would prove nothing"
        );
        assert_eq!(a.len(), b.len(), "{table}: row counts differ");
        for (ra, rb) in a.iter().zip(&b) {
            let same = ra.len() == rb.len()
                && ra.iter().zip(rb).all(|(x, y)| {
                    x == y
                        || matches!((x.parse::<f64>(), y.parse::<f64>()),
                            (Ok(x), Ok(y)) if (x - y).abs() <= 1e-9 * x.abs().max(1.0))
                });
            assert!(same, "{table}: local {ra:?} ≠ ballista {rb:?}");
        }
    }
}

#[cfg(feature = "ballista")]
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
