//! `pulse demo` end to end: every artifact exists and agrees with the metric tables.

use std::process::Command;

use crate::common::Scratch;

#[test]
fn demo_produces_a_consistent_pipeline() {
    let s = Scratch::new();
    let dir = s.path("demo");
    let out = s.ok(&[
        "demo",
        "--dir",
        dir.to_str().unwrap(),
        "--members",
        "300",
        "--days",
        "60",
        "--as-of",
        "2026-11-23",
    ]);
    assert!(out.contains("4/4 wrote 2 reports, emailed 2"), "{out}");
    // Query the demo's lake with the demo's config, as the summary suggests.
    let query = |sql: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_pulse"))
            .current_dir(&dir)
            .env("PULSE_CONFIG", "pulse.toml")
            .env_remove("PULSE_LAKE")
            .args(["query", "--format", "csv", sql])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    for (community, label) in [
        ("python-camp", "- 成员数: "),
        ("data-circle", "- Members: "),
    ] {
        let report = dir.join(format!("lake/reports/{community}/2026-11-23"));
        for f in ["report.html", "report.txt", "tiers.png", "daily_active.png"] {
            assert!(report.join(f).is_file(), "{community}: {f}");
        }
        let emails = std::fs::read_dir(dir.join(format!("state/outbox/{community}/2026-11-23")))
            .unwrap()
            .count();
        assert_eq!(emails, 1, "{community}");

        let members = query(&format!(
            "SELECT CAST(value AS BIGINT) AS v FROM kpis WHERE community_id = '{community}' AND metric = 'members'"
        ));
        let members: i64 = members.lines().nth(1).unwrap().parse().unwrap();
        let text = std::fs::read_to_string(report.join("report.txt")).unwrap();
        let shown = format!(
            "{label}{} ",
            pulse::report::render::group_number(members as f64, 0, false)
        );
        assert!(text.contains(&shown), "{community}: {shown} not in report");

        let ranked = query(&format!(
            "SELECT rank, member_id, points, tier FROM ranked_members WHERE community_id = '{community}' ORDER BY rank"
        ));
        let file =
            std::fs::read_to_string(dir.join(format!("out/ranked/{community}/2026-11-23.csv")))
                .unwrap();
        let mut reader = csv::Reader::from_reader(file.as_bytes());
        let headers = reader.headers().unwrap().clone();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let from_file: Vec<String> = reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                format!(
                    "{},{},{},{}",
                    &r[col("rank")],
                    &r[col("member_id")],
                    &r[col("points")],
                    &r[col("tier")]
                )
            })
            .collect();
        let from_table: Vec<String> = ranked.lines().skip(1).map(str::to_string).collect();
        assert!(from_table.len() > 20, "{community}: {}", from_table.len());
        assert_eq!(from_file, from_table, "{community}");
    }
    // A second demo replaces the first; a directory that is not a demo is refused.
    s.ok(&[
        "demo",
        "--dir",
        dir.to_str().unwrap(),
        "--members",
        "50",
        "--days",
        "10",
    ]);
    std::fs::create_dir_all(s.path("mine")).unwrap();
    s.write("mine/notes.txt", "mine");
    let refused = s.pulse(&["demo", "--dir", s.path("mine").to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not an earlier demo"));
}

#[test]
fn init_writes_a_config_that_checks() {
    let s = Scratch::new();
    let out = s.ok(&["init"]);
    assert!(
        out.contains("config/pulse.toml") && out.contains("pulse check-config"),
        "{out}"
    );
    let checked = s.ok(&["check-config"]);
    assert!(checked.contains("config/pulse.toml: OK"), "{checked}");
    assert!(
        !s.pulse(&["init"]).status.success(),
        "init does not overwrite"
    );
}
