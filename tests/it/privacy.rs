//! Personal data (SPEC §8): names from the member directory in the report and nowhere in the
//! lake; `pulse forget` leaves no trace of a member and others' metrics as a recomputation
//! without them; the keyed-hash record keeps a re-import from bringing them back.

use crate::common::{e, parquet_files, Scratch, E};

const KEY_ENV: &str = "PULSE_TEST_FORGET_KEY";

const CONFIG: &str = r#"
lake = "lake"
state_dir = "state"

[privacy]
forget_key_env = "PULSE_TEST_FORGET_KEY"

[[communities]]
id = "c1"
timezone = "Asia/Shanghai"
locale = "en"
report_to = ["ops@example.com"]

[[communities]]
id = "c2"
timezone = "UTC"
locale = "zh-CN"
"#;

/// alice posts and gets likes (from bob, and from carol without a target); bob and carol
/// check in; the same ids exist in c2.
fn events() -> Vec<E> {
    let mut events = Vec::new();
    for (community, shift) in [("c1", 0), ("c2", 1)] {
        let at = |d: u32, h: u32| format!("2026-11-{:02}T{h:02}:00:00Z", d + shift);
        let ev = |m: &str, kind: &str, at: String| e(m, kind, &at).set("community_id", community);
        for m in ["alice", "bob", "carol", "dave"] {
            events.push(ev(m, "join", "2026-10-01T01:00:00Z".to_string()));
        }
        for d in 1..=12 {
            events.push(
                ev("alice", "post", at(d, 2))
                    .set("content_id", format!("{community}-p{d}"))
                    .set("title", "alice's question"),
            );
            events.push(
                ev("bob", "like", at(d, 3))
                    .set("content_id", format!("{community}-p{d}"))
                    .to("alice"),
            );
            events
                .push(ev("carol", "like", at(d, 4)).set("content_id", format!("{community}-p{d}")));
            events.push(ev("bob", "checkin", at(d, 5)));
            events.push(
                ev("dave", "comment", at(d, 6))
                    .set("parent_id", format!("{community}-p{d}"))
                    .set("content_id", format!("{community}-c{d}")),
            );
        }
    }
    events
}

fn everything_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            everything_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Files under the lake and state directories that contain `needle`: Parquet decoded (zstd
/// pages hide bytes), everything else byte-searched.
fn files_naming(s: &Scratch, needle: &str) -> Vec<String> {
    let mut files = Vec::new();
    everything_under(&s.path("lake"), &mut files);
    everything_under(&s.path("state"), &mut files);
    let mut hits = Vec::new();
    for f in files {
        let text = if f.extension().is_some_and(|x| x == "parquet") {
            let file = std::fs::File::open(&f).unwrap();
            let reader =
                datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    file,
                )
                .unwrap()
                .build()
                .unwrap();
            let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string()
        } else {
            String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned()
        };
        if text.contains(needle) {
            hits.push(f.display().to_string());
        }
    }
    hits
}

#[test]
fn names_reach_the_report_not_the_lake() {
    let s = Scratch::new();
    s.config(CONFIG);
    s.import(&events());
    let csv = s.path("names.csv");
    // GBK, as Excel saves it in a Chinese locale.
    std::fs::write(
        &csv,
        encoding_rs::GBK
            .encode("member_id,display_name\nalice,王小丽\nbob,<b>Bob</b>\n")
            .0,
    )
    .unwrap();
    let out = s.ok(&["members", "import", csv.to_str().unwrap()]);
    assert!(out.contains("read 2 name(s)"), "{out}");
    s.ok(&["members", "set", "carol", "Carol Chen"]);
    let listed = s.ok(&["members", "list", "--community", "c1"]);
    assert!(
        listed.contains("王小丽") && listed.contains("Carol Chen"),
        "{listed}"
    );

    s.run("2026-11-15");
    let html = std::fs::read_to_string(s.path("lake/reports/c1/2026-11-15/report.html")).unwrap();
    assert!(html.contains("王小丽"), "the name is in the HTML report");
    assert!(
        html.contains("&lt;b&gt;Bob") && !html.contains("<b>Bob</b>"),
        "names are escaped"
    );
    let text = std::fs::read_to_string(s.path("lake/reports/c2/2026-11-15/report.txt")).unwrap();
    assert!(text.contains("王小丽 (alice)"), "{text}");
    // Names are nowhere in the lake.
    let mut lake_files = Vec::new();
    everything_under(&s.path("lake"), &mut lake_files);
    let in_lake: Vec<_> = files_naming(&s, "王小丽")
        .into_iter()
        .filter(|f| f.contains("/lake/") && !f.contains("/reports/"))
        .collect();
    assert!(in_lake.is_empty(), "{in_lake:?}");
    assert!(!parquet_files(&s.path("lake/events")).is_empty());
}

#[test]
fn forget_leaves_no_trace_and_others_metrics_as_without_them() {
    std::env::set_var(KEY_ENV, "a-forget-key-for-tests-only-0123456789");
    let s = Scratch::new();
    s.config(CONFIG);
    let all = events();
    s.import(&all);
    s.ok(&["members", "set", "alice", "Alice Wang"]);
    s.run("2026-11-10");
    s.run("2026-11-15");
    let bad = s.write(
        "bad.ndjson",
        r#"{"event_id":"x1","source":"generic","community_id":"c1","member_id":"alice","event_type":"nonsense","occurred_at":"2026-11-02T00:00:00Z"}
"#,
    );
    let _ = s.pulse(&["import", bad.to_str().unwrap()]);
    assert!(!files_naming(&s, "alice").is_empty());

    let dry = s.ok(&["forget", "alice", "--dry-run"]);
    assert!(dry.contains("dry run"), "{dry}");
    assert!(!files_naming(&s, "\"alice\"").is_empty() || !files_naming(&s, "alice").is_empty());

    let out = s.ok(&["forget", "alice"]);
    assert!(out.contains("event(s) removed"), "{out}");
    let left = files_naming(&s, "alice");
    assert!(left.is_empty(), "traces of alice: {left:?}");
    assert!(files_naming(&s, "Alice Wang").is_empty());

    // Others' metrics equal a clean recomputation without alice's events.
    let clean = Scratch::new();
    clean.config(CONFIG);
    let without: Vec<E> = all
        .into_iter()
        .filter(|e| !e.json().contains(r#""member_id":"alice""#))
        .map(|e| {
            if e.json().contains(r#""target_member_id":"alice""#) {
                e.set("target_member_id", serde_json::Value::Null)
            } else {
                e
            }
        })
        .collect();
    clean.import(&without);
    clean.run("2026-11-10");
    clean.run("2026-11-15");
    for table in [
        "member_activity",
        "member_influence",
        "community_influence",
        "ranked_members",
        "kpis",
        "retention_cohorts",
        "demand_categories",
    ] {
        let sql = format!("SELECT * FROM {table}");
        let (mut got, mut want) = (s.rows(&sql), clean.rows(&sql));
        got.sort();
        want.sort();
        assert!(!want.is_empty(), "{table}");
        assert_eq!(got, want, "{table}");
    }

    // Twice changes nothing more; a re-import brings nothing of alice back.
    let again = s.ok(&["forget", "alice"]);
    assert!(
        again.contains("0 newly recorded") && again.contains("0 partition(s) rewritten"),
        "{again}"
    );
    let events_file = s.write(
        "again.ndjson",
        &events().iter().map(|e| e.json() + "\n").collect::<String>(),
    );
    let reimport = s.ok(&["import", events_file.to_str().unwrap()]);
    assert!(reimport.contains("forgotten 26"), "{reimport}");
    assert!(files_naming(&s, "alice").is_empty());
    let runs = s.ok(&["runs"]);
    assert!(runs.contains("erasure"), "{runs}");
}
