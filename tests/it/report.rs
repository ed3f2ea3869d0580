//! The report: written to the lake, emailed once through the file transport, numbers equal to
//! the metric tables, edited templates, an empty community. (The SMTP transport is tested
//! against a real server in tests/python/test_report_email.py.)

use crate::common::{e, Scratch};

const CONFIG: &str = r#"
lake = "lake"
state_dir = "state"

[[communities]]
id = "c1"
name = "Python 实战营"
timezone = "Asia/Shanghai"
locale = "zh-CN"
report_to = ["ops@example.com", "Lead <lead@example.com>"]
"#;

fn community() -> Scratch {
    let s = Scratch::new();
    s.config(CONFIG);
    let mut events = Vec::new();
    for (i, m) in ["alice", "bob", "carol"].iter().enumerate() {
        events.push(e(m, "join", "2026-10-01T10:00:00+08:00"));
        for d in 10..=20 {
            if d % (i + 1) == 0 {
                events.push(e(m, "checkin", &format!("2026-11-{d}T09:00:00+08:00")));
            }
        }
    }
    events.push(
        e("alice", "post", "2026-11-18T09:00:00+08:00")
            .set("content_id", "p1")
            .set("title", "课程作业怎么提交？"),
    );
    events.push(
        e("bob", "purchase", "2026-11-12T09:00:00+08:00")
            .set("amount_minor", 19900)
            .set("currency", "CNY"),
    );
    s.import(&events);
    s
}

fn outbox(s: &Scratch) -> Vec<std::path::PathBuf> {
    let dir = s.path("state/outbox/c1/2026-11-23");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn run_writes_the_report_and_emails_each_recipient_once() {
    let s = community();
    let out = s.run("2026-11-23");
    assert!(out.contains("emailed to 2 recipient(s)"), "{out}");
    let dir = s.path("lake/reports/c1/2026-11-23");
    for f in ["report.html", "report.txt", "tiers.png", "daily_active.png"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains(r#"src="tiers.png""#) && html.contains("核心指标"));
    let emails = outbox(&s);
    assert_eq!(emails.len(), 2);
    let eml = std::fs::read_to_string(&emails[0]).unwrap();
    assert!(eml.contains("multipart/alternative") && eml.contains("multipart/related"));
    assert!(eml.contains("Content-ID: <tiers.c1.2026-11-23@pulse>"));
    // The subject is encoded (RFC 2047) because it is Chinese.
    assert!(eml.contains("Subject: =?utf-8?"), "{}", &eml[..400]);

    let again = s.run("2026-11-23");
    assert!(again.contains("2 recipient(s) already had it"), "{again}");
    let ledger = std::fs::read_to_string(s.path("state/emails.jsonl")).unwrap();
    assert_eq!(ledger.matches(r#""status":"sent""#).count(), 2);
    s.ok(&["run", "--as-of", "2026-11-23", "--resend"]);
    let ledger = std::fs::read_to_string(s.path("state/emails.jsonl")).unwrap();
    assert_eq!(ledger.matches(r#""status":"sent""#).count(), 4);
    let listed = s.ok(&["deliveries", "--community", "c1"]);
    assert_eq!(
        listed.matches("email:ops@example.com").count(),
        4,
        "{listed}"
    );
}

#[test]
fn report_text_shows_the_metric_tables_numbers() {
    let s = community();
    s.run("2026-11-23");
    let text = std::fs::read_to_string(s.path("lake/reports/c1/2026-11-23/report.txt")).unwrap();
    let kpi = |m: &str| {
        s.scalar(&format!(
            "SELECT CAST(value AS BIGINT) FROM kpis WHERE metric = '{m}' AND as_of = DATE '2026-11-23'"
        ))
    };
    assert!(
        text.contains(&format!("- 成员数: {} (上期", kpi("members"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("- 发帖: {} (上期", kpi("posts"))),
        "{text}"
    );
    assert!(
        text.contains("- CNY: 收入 CNY 199.00, 购买人数 1, ARPPU CNY 199.00"),
        "{text}"
    );
    for row in s.records("SELECT rank, member_id, activity_score FROM ranked_members ORDER BY rank")
    {
        let score: f64 = row["activity_score"].parse().unwrap();
        let line = format!("{}. {} [", row["rank"], row["member_id"]);
        let shown = text
            .lines()
            .find(|l| l.starts_with(&line))
            .expect("ranked member listed");
        assert!(shown.contains(&format!("活跃分 {score:.2}")), "{shown}");
    }
    // The unanswered post, with its age at as_of (posted 18 Nov 09:00, as_of 23 Nov 00:00).
    assert!(
        text.contains("课程作业怎么提交？ (alice, 2026年11月18日 09:00, 已等待 4天15小时)"),
        "{text}"
    );
}

#[test]
fn report_previews_without_sending_and_edited_templates_are_used() {
    let s = community();
    s.ok(&["run", "--as-of", "2026-11-23"]);
    std::fs::create_dir_all(s.path("tpl")).unwrap();
    s.write(
        "tpl/report.txt.j2",
        "{{ r.community_name }}: {{ r.members_total }} members\n",
    );
    s.config(&format!("{CONFIG}\n[report]\ntemplates = \"tpl\"\n"));
    let out = s.ok(&["report", "--out", "preview"]);
    assert!(out.contains("preview/c1/2026-11-23/report.html"), "{out}");
    let text = std::fs::read_to_string(s.path("preview/c1/2026-11-23/report.txt")).unwrap();
    assert_eq!(text, "Python 实战营: 3 members\n");
    assert_eq!(outbox(&s).len(), 2, "report does not send");

    s.write("tpl/report.txt.j2", "{% for x in %}\n");
    let bad = s.pulse(&["report"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("tpl/report.txt.j2"),
        "{err}"
    );

    std::fs::remove_file(s.path("tpl/report.txt.j2")).unwrap();
    let none = s.pulse(&["report", "--as-of", "2026-11-01"]);
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(
        err.contains("run `pulse run --as-of 2026-11-01 --community c1` first"),
        "{err}"
    );
}

#[test]
fn an_empty_community_gets_a_short_report() {
    let s = community();
    s.config(&CONFIG.replace("id = \"c1\"", "id = \"c9\""));
    s.ok(&["run", "--as-of", "2026-11-23", "--community", "c9"]);
    let text = std::fs::read_to_string(s.path("lake/reports/c9/2026-11-23/report.txt")).unwrap();
    assert!(text.contains("此日期前没有事件"), "{text}");
}

/// The report's oldest unanswered posts and demand_categories' `unanswered` follow one rule
/// (SPEC §4.6, the answered_posts model), here at the 48 h edges of tests/it/models.rs.
#[test]
fn unanswered_posts_follow_the_48h_rule_of_demand_categories() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("tpl")).unwrap();
    s.write(
        "tpl/report.txt.j2",
        "{% for p in r.unanswered_posts %}{{ p.content_id }} {% endfor %}\n",
    );
    s.config("[defaults]\nwindow_days = 10\n\n[report]\ntemplates = \"tpl\"\n");
    let post = |m: &str, id: &str, at: &str| {
        e(m, "post", at)
            .set("content_id", id)
            .set("title", "a question")
    };
    let reply = |m: &str, post: &str, at: &str| {
        e(m, "comment", at)
            .set("parent_id", post)
            .set("content_id", format!("re-{post}-{m}"))
    };
    s.import(&[
        post("a", "p0", "2026-10-25T10:00:00Z"), // in W′: not listed
        post("a", "p1", "2026-11-02T10:00:00Z"),
        reply("b", "p1", "2026-11-04T10:00:00Z"), // exactly 48 h: answered
        post("a", "p2", "2026-11-02T11:00:00Z"),
        reply("b", "p2", "2026-11-04T11:00:01Z"), // one second late
        post("a", "p3", "2026-11-03T10:00:00Z"),
        reply("a", "p3", "2026-11-03T11:00:00Z"), // the author's own reply does not count
        post("a", "p4", "2026-11-09T23:00:00Z"),
        reply("b", "p4", "2026-11-11T00:00:00Z"), // at as_of: not seen by this run
        post("b", "p5", "2026-11-05T10:00:00Z"),
        reply("c", "p5", "2026-11-05T12:00:00Z"),
    ]);
    s.run("2026-11-11");
    let text = std::fs::read_to_string(s.path("lake/reports/c1/2026-11-11/report.txt")).unwrap();
    assert_eq!(text, "p2 p3 p4 \n");
    let unanswered = s.scalar(
        "SELECT unanswered FROM demand_categories WHERE taxonomy = 'needs' AND category = 'uncategorized'",
    );
    assert_eq!(unanswered, "3");
}
