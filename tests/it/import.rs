//! `pulse import`: lake layout, dedupe across imports, quarantine, exit status, atomicity.

use crate::common::{event, parquet_files, Scratch};

#[test]
fn imports_into_hive_partitions_by_utc_date() {
    let s = Scratch::new();
    // 07:30 in Shanghai is still the previous day in UTC; 21:00 in New York is the next one.
    let lines = [
        event("e1", "m1", "post", "2026-11-23T07:30:00+08:00"),
        event("e2", "m2", "like", "2026-11-22T21:00:00-05:00"),
        event("e3", "m1", "comment", "2026-11-23T12:00:00Z"),
    ];
    let f = s.write("in.ndjson", &(lines.join("\n") + "\n"));
    let out = s.ok(&["import", f.to_str().unwrap()]);
    assert!(
        out.contains("read 3 · imported 3 · duplicate 0 · quarantined 0"),
        "{out}"
    );
    assert_eq!(
        parquet_files(&s.lake().join("events"))
            .iter()
            .map(|f| f.rsplit_once('/').unwrap().0.to_string())
            .collect::<Vec<_>>(),
        vec![
            "community_id=c1/event_date=2026-11-22",
            "community_id=c1/event_date=2026-11-23"
        ]
    );
    let rows = s.rows("SELECT event_id, CAST(event_date AS VARCHAR), CAST(occurred_at AS VARCHAR) FROM events ORDER BY event_id");
    assert_eq!(rows[0], ["e1", "2026-11-22", "2026-11-22T23:30:00Z"]);
    assert_eq!(rows[1], ["e2", "2026-11-23", "2026-11-23T02:00:00Z"]);
    assert_eq!(rows[2][1], "2026-11-23");
}

#[test]
fn rows_are_sorted_by_member_then_time_and_zstd_compressed() {
    let s = Scratch::new();
    let lines = [
        event("a", "m2", "post", "2026-11-23T10:00:00Z"),
        event("b", "m1", "post", "2026-11-23T11:00:00Z"),
        event("c", "m1", "like", "2026-11-23T09:00:00Z"),
        event("d", "m2", "like", "2026-11-23T08:00:00Z"),
    ];
    let f = s.write("in.ndjson", &lines.join("\n"));
    s.ok(&["import", f.to_str().unwrap()]);
    let files = parquet_files(&s.lake().join("events"));
    assert_eq!(files.len(), 1);
    let file = std::fs::File::open(s.lake().join("events").join(&files[0])).unwrap();
    let reader = datafusion::parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use datafusion::parquet::file::reader::FileReader;
    let meta = reader.metadata();
    // zstd, but for the columns of a few values a file, which it would not shrink.
    for column in meta.row_group(0).columns() {
        let name = column.column_path().string();
        let compression = column.compression();
        let few_values = [
            "source",
            "event_type",
            "received_at",
            "amount_minor",
            "currency",
        ];
        assert_eq!(
            matches!(
                compression,
                datafusion::parquet::basic::Compression::ZSTD(_)
            ),
            !few_values.contains(&name.as_str()),
            "{name}: {compression:?}"
        );
        // A dictionary only for columns whose values repeat within a file (ids of members,
        // kinds), not for ids of events or content, texts or times.
        let distinct = [
            "event_id",
            "occurred_at",
            "content_id",
            "parent_id",
            "title",
            "body",
            "properties",
        ];
        assert_eq!(
            column.dictionary_page_offset().is_some(),
            !distinct.contains(&name.as_str()),
            "{name}: dictionary page at {:?}",
            column.dictionary_page_offset()
        );
    }
    // Read the file in storage order: m1 09:00, m1 11:00, m2 08:00, m2 10:00.
    let builder =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(s.lake().join("events").join(&files[0])).unwrap(),
        )
        .unwrap();
    let batch = builder.build().unwrap().next().unwrap().unwrap();
    let ids = batch.column_by_name("event_id").unwrap();
    let ids = ids
        .as_any()
        .downcast_ref::<datafusion::arrow::array::StringArray>()
        .unwrap();
    assert_eq!(
        ids.iter().flatten().collect::<Vec<_>>(),
        ["c", "b", "d", "a"]
    );
}

#[test]
fn dedupe_holds_within_and_across_imports() {
    let s = Scratch::new();
    let a = s.write(
        "a.ndjson",
        &[
            event("e1", "m1", "post", "2026-11-20T10:00:00Z"),
            event("e2", "m1", "like", "2026-11-20T11:00:00Z"),
            event("e1", "m9", "post", "2026-11-21T10:00:00Z"), // same key later in the file: dropped
        ]
        .join("\n"),
    );
    let out = s.ok(&["import", a.to_str().unwrap()]);
    assert!(out.contains("read 3 · imported 2 · duplicate 1"), "{out}");
    // The same file again: nothing new.
    let out = s.ok(&["import", a.to_str().unwrap()]);
    assert!(out.contains("read 3 · imported 0 · duplicate 3"), "{out}");
    // An overlapping file: only e3 is new; the stored e1 (first received) stays.
    let b = s.write(
        "b.ndjson",
        &[
            event("e2", "m1", "like", "2026-11-20T11:00:00Z"),
            event("e3", "m2", "comment", "2026-11-22T10:00:00Z"),
        ]
        .join("\n"),
    );
    let out = s.ok(&["import", b.to_str().unwrap()]);
    assert!(out.contains("read 2 · imported 1 · duplicate 1"), "{out}");
    assert_eq!(s.scalar("SELECT count(*) FROM events"), "3");
    assert_eq!(
        s.scalar("SELECT member_id FROM events WHERE event_id = 'e1'"),
        "m1"
    );
    // Another source with the same event_id is a different event.
    let c = s.write(
        "c.ndjson",
        &event("e1", "m1", "post", "2026-11-20T10:00:00Z").replace("generic", "discourse"),
    );
    let out = s.ok(&["import", c.to_str().unwrap()]);
    assert!(out.contains("imported 1"), "{out}");
}

#[test]
fn the_same_source_and_event_id_in_two_communities_are_two_events() {
    // SPEC §2: the dedupe key is (community_id, source, event_id). One community's sender must
    // not erase another's event by reusing its (predictable) id.
    let s = Scratch::new();
    let in_c2 = |id: &str, member: &str| {
        event(id, member, "post", "2026-11-20T10:00:00Z").replace(r#""c1""#, r#""c2""#)
    };
    // Within one import: both copies are kept.
    let a = s.write(
        "a.ndjson",
        &[
            event("e1", "m1", "post", "2026-11-20T10:00:00Z"),
            in_c2("e1", "x1"),
        ]
        .join("\n"),
    );
    let out = s.ok(&["import", a.to_str().unwrap()]);
    assert!(out.contains("read 2 · imported 2 · duplicate 0"), "{out}");
    // Across imports (keys read back from the lake's files): c2's e2 does not hide c1's.
    let b = s.write("b.ndjson", &in_c2("e2", "x2"));
    assert!(s
        .ok(&["import", b.to_str().unwrap()])
        .contains("imported 1"));
    let c = s.write(
        "c.ndjson",
        &[
            event("e2", "m2", "post", "2026-11-20T10:00:00Z"),
            in_c2("e1", "x9"), // a true duplicate in c2: dropped
        ]
        .join("\n"),
    );
    let out = s.ok(&["import", c.to_str().unwrap()]);
    assert!(out.contains("read 2 · imported 1 · duplicate 1"), "{out}");
    assert_eq!(
        s.rows("SELECT community_id, event_id, member_id FROM events ORDER BY 1, 2"),
        [
            ["c1", "e1", "m1"],
            ["c1", "e2", "m2"],
            ["c2", "e1", "x1"],
            ["c2", "e2", "x2"]
        ]
    );
}

#[test]
fn within_an_import_the_earliest_received_copy_wins() {
    let s = Scratch::new();
    let with_received = |member: &str, received: &str| {
        event("e1", member, "post", "2026-11-20T10:00:00Z")
            .replace('}', &format!(r#","received_at":"{received}"}}"#))
    };
    let f = s.write(
        "in.ndjson",
        &[
            with_received("late", "2026-11-20T10:05:00Z"),
            with_received("early", "2026-11-20T10:01:00Z"),
        ]
        .join("\n"),
    );
    let out = s.ok(&["import", f.to_str().unwrap()]);
    assert!(out.contains("imported 1 · duplicate 1"), "{out}");
    assert_eq!(s.scalar("SELECT member_id FROM events"), "early");
    assert_eq!(
        s.scalar("SELECT CAST(received_at AS VARCHAR) FROM events"),
        "2026-11-20T10:01:00Z"
    );
}

#[test]
fn bad_lines_go_to_quarantine_with_reason_and_exit_status_3() {
    let s = Scratch::new();
    let good = event("ok1", "m1", "post", "2026-11-20T10:00:00Z");
    let lines = [
        good.clone(),
        "{broken json".to_string(),
        event("x2", "m1", "hug", "2026-11-20T10:00:00Z"),
        event("x3", "m1", "post", "2026-11-20T10:00:00"),
        event("x4", "", "post", "2026-11-20T10:00:00Z"),
        event("x5", "m1", "purchase", "2026-11-20T10:00:00Z")
            .replace('}', r#","amount_minor":-100,"currency":"CNY"}"#),
        event("x6", "m1", "post", "2026-11-20T10:00:00Z").replace(r#""m1""#, "42"),
        String::new(),
        event("ok2", "m2", "like", "2026-11-20T10:00:00Z"),
    ];
    let f = s.write("mixed.ndjson", &lines.join("\n"));
    let out = s.pulse(&["import", f.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("read 8 · imported 2 · duplicate 0 · quarantined 6"),
        "{stdout}"
    );
    assert_eq!(s.scalar("SELECT count(*) FROM events"), "2");

    let records = s.quarantine();
    let summary: Vec<(u64, String)> = records
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect = [
        (2, "invalid JSON"),
        (3, "unknown event_type `hug`"),
        (4, "no UTC offset"),
        (5, "`member_id` is empty"),
        (6, "must not be negative"),
        (7, "invalid type"),
    ];
    assert_eq!(summary.len(), expect.len(), "{summary:?}");
    for ((line, reason), (want_line, want_reason)) in summary.iter().zip(expect) {
        assert_eq!(*line, want_line);
        assert!(reason.contains(want_reason), "line {line}: {reason}");
    }
    assert!(records
        .iter()
        .all(|r| r["file"].as_str().unwrap().ends_with("mixed.ndjson")));
    // A line that is not JSON cannot be scrubbed of personal data: only its length and hash
    // are kept; a JSON line is kept (scrubbed).
    assert_eq!(records[0].get("raw"), None);
    assert_eq!(records[0]["raw_bytes"], "{broken json".len());
    assert_eq!(
        records[0]["raw_xxh3"],
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b"{broken json"))
    );
    assert!(records[1]["raw"].as_str().unwrap().contains("hug"));
}

/// Over-long NDJSON lines (1 MiB is the cap) are quarantined by reference — file, line number,
/// length and a hash — not copied whole; one longer than the read buffer is never held whole in
/// memory either.
#[test]
fn over_long_ndjson_lines_are_quarantined_by_reference() {
    let s = Scratch::new();
    let long = format!(r#"{{"event_id":"x","body":"{}"}}"#, "a".repeat(3 << 20));
    let longer = "b".repeat(20 << 20);
    let text = [
        event("ok1", "m1", "post", "2026-11-20T10:00:00Z"),
        long.clone(),
        event("ok2", "m2", "post", "2026-11-20T10:00:00Z"),
        longer.clone(),
    ]
    .join("\n");
    let f = s.write("long.ndjson", &text);
    let out = s.pulse(&["import", f.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("read 4 · imported 2 · duplicate 0 · quarantined 2"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut quarantined = String::new();
    for day in std::fs::read_dir(s.lake().join("quarantine")).unwrap() {
        for file in std::fs::read_dir(day.unwrap().path()).unwrap() {
            quarantined += &std::fs::read_to_string(file.unwrap().path()).unwrap();
        }
    }
    assert!(
        quarantined.len() < 4096,
        "{} bytes quarantined",
        quarantined.len()
    );
    let records: Vec<serde_json::Value> = quarantined
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<u64> = records
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 4]);
    for (r, len) in records.iter().zip([long.len(), longer.len()]) {
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("{len} bytes")) && reason.contains("xxh3"),
            "{reason}"
        );
        assert!(r["file"].as_str().unwrap().ends_with("long.ndjson"));
    }
}

/// A line that fills the 32 MiB read buffer without ending is skipped as it streams past
/// (hashed part by part, never held whole); the lines after it are read, and numbered, as usual.
#[test]
fn a_line_longer_than_the_read_buffer_is_skipped_as_it_streams() {
    let s = Scratch::new();
    let huge = "c".repeat(40 << 20);
    let text = [
        huge.clone(),
        event("ok1", "m1", "post", "2026-11-20T10:00:00Z"),
        event("ok2", "m2", "post", "2026-11-20T10:00:00Z"),
    ]
    .join("\n");
    let f = s.write("huge.ndjson", &text);
    let out = s.pulse(&["import", f.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("read 3 · imported 2 · duplicate 0 · quarantined 1"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = s.quarantine();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["line"], 1);
    let reason = record["reason"].as_str().unwrap();
    let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(huge.as_bytes()));
    assert!(
        reason.contains(&format!("line of {} bytes", huge.len())) && reason.contains(&hash),
        "{reason}"
    );
}

#[test]
fn csv_import_with_header_row() {
    let s = Scratch::new();
    let f = s.write(
        "export.csv",
        "event_id,source,community_id,member_id,event_type,occurred_at,amount_minor,currency,title\n\
         p1,csv,c1,m1,purchase,2026-11-20T10:00:00+08:00,19900,CNY,\n\
         p2,csv,c1,m2,post,2026-11-20T11:00:00Z,,,\"Hello, world\"\n\
         p3,csv,c1,m3,purchase,2026-11-20T12:00:00Z,12.5,CNY,\n",
    );
    let out = s.pulse(&["import", "--format", "csv", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("read 3 · imported 2 · duplicate 0 · quarantined 1"));
    assert_eq!(
        s.scalar("SELECT amount_minor FROM events WHERE event_id = 'p1'"),
        "19900"
    );
    assert_eq!(
        s.scalar("SELECT title FROM events WHERE event_id = 'p2'"),
        "Hello, world"
    );
    assert_eq!(
        s.scalar("SELECT count(*) FROM events WHERE title IS NULL"),
        "1"
    );

    let bad = s.write("bad.csv", "event_id,who\n1,2\n");
    let out = s.pulse(&["import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv") && err.contains("unknown column `who`"),
        "{err}"
    );
}

#[test]
fn personal_data_stays_out_of_properties() {
    let s = Scratch::new();
    let line = event("e1", "m1", "join", "2026-11-20T10:00:00Z")
        .replace('}', r#","properties":{"email":"ann@example.com","plan":"gold","profile":{"real_name":"Ann","level":2}}}"#);
    let f = s.write("in.ndjson", &line);
    s.ok(&["import", f.to_str().unwrap()]);
    assert_eq!(
        s.scalar("SELECT properties FROM events"),
        r#"{"plan":"gold","profile":{"level":2}}"#
    );
}

/// Import a generated file while killing `pulse import` at several moments; each rerun must
/// converge on exactly the lake one clean run produces.
#[test]
fn killed_import_rerun_gives_the_same_lake() {
    let s = Scratch::new();
    let input = s.path("big.ndjson");
    s.ok(&[
        "generate",
        "--members",
        "1500",
        "--days",
        "60",
        "--communities",
        "2",
        "--seed",
        "3",
        "--end",
        "2026-11-01",
        "--out",
        input.to_str().unwrap(),
    ]);
    // The clean run, in its own lake.
    let clean = Scratch::new();
    let clean_out = clean.ok(&["import", input.to_str().unwrap()]);
    let clean_files = parquet_files(&clean.lake().join("events"));
    assert!(clean_files.len() > 60, "{clean_files:?}");

    // Deterministic worst case: the process dies after moving only some files into place.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pulse"))
        .current_dir(s.dir.path())
        .env("PULSE_TEST_ABORT_AFTER_RENAMES", "7")
        .args([
            "--lake",
            s.lake().to_str().unwrap(),
            "import",
            input.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(parquet_files(&s.lake().join("events")).len(), 7);

    // Random kills at growing delays.
    for delay_ms in [30u64, 120, 300, 600] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pulse"))
            .current_dir(s.dir.path())
            .args([
                "--lake",
                s.lake().to_str().unwrap(),
                "import",
                input.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    s.ok(&["import", input.to_str().unwrap()]);
    assert_eq!(parquet_files(&s.lake().join("events")), clean_files);
    let content = "SELECT count(*), count(DISTINCT event_id), sum(length(member_id)), \
                   sum(CAST(occurred_at AS BIGINT)) % 1000000007, sum(amount_minor), sum(length(coalesce(body, ''))) FROM events";
    assert_eq!(s.rows(content), clean.rows(content));
    assert!(
        !s.lake().join("_staging").exists()
            || std::fs::read_dir(s.lake().join("_staging"))
                .unwrap()
                .count()
                == 0
    );
    let total: u64 = clean_out
        .split(" · ")
        .find_map(|p| p.strip_prefix("imported "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(s.scalar("SELECT count(*) FROM events"), total.to_string());
}
