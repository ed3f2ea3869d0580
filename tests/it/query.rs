//! `pulse query`: read-only SQL, output formats, an empty lake.

use crate::common::{event, Scratch};

fn lake_with_three_events() -> Scratch {
    let s = Scratch::new();
    let f = s.write(
        "in.ndjson",
        &[
            event("e1", "m1", "post", "2026-11-20T10:00:00Z"),
            event("e2", "m2", "like", "2026-11-20T11:00:00Z"),
            event("e3", "m1", "like", "2026-11-21T11:00:00Z"),
        ]
        .join("\n"),
    );
    s.ok(&["import", f.to_str().unwrap()]);
    s
}

#[test]
fn an_empty_lake_is_a_valid_lake() {
    let s = Scratch::new();
    assert_eq!(s.scalar("SELECT count(*) FROM events"), "0");
    assert_eq!(s.scalar("SELECT count(*) FROM member_activity"), "0");
    assert_eq!(s.scalar("SELECT count(*) FROM member_day_types"), "0");
    assert_eq!(
        s.scalar("SELECT local_date(TIMESTAMP '2026-11-22T16:00:00Z', 'Asia/Shanghai')"),
        "2026-11-23"
    );
    let out = s.ok(&["query", "--format", "json", "SELECT * FROM events"]);
    assert_eq!(out.trim(), "[]");
}

#[test]
fn table_csv_json_and_parquet_output() {
    let s = lake_with_three_events();
    let sql =
        "SELECT event_type, count(*) AS n FROM events GROUP BY event_type ORDER BY event_type";
    let table = s.ok(&["query", sql]);
    assert!(
        table.contains("| event_type | n |") && table.contains("| like       | 2 |"),
        "{table}"
    );
    assert_eq!(
        s.ok(&["query", "--format", "csv", sql]),
        "event_type,n\nlike,2\npost,1\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["query", "--format", "json", sql])).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"event_type": "like", "n": 2}, {"event_type": "post", "n": 1}])
    );
    let out = s.path("out.parquet");
    s.ok(&[
        "query",
        "--format",
        "parquet",
        "--output",
        out.to_str().unwrap(),
        sql,
    ]);
    let reader =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&out).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 2);
    let err = s.pulse(&["query", "--format", "parquet", sql]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("--output"));
}

#[test]
fn queries_cannot_change_the_lake() {
    let s = lake_with_three_events();
    for sql in [
        "CREATE TABLE x AS SELECT 1",
        "DROP TABLE events",
        "INSERT INTO events SELECT * FROM events",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let out = s.pulse(&["query", sql]);
        assert!(!out.status.success(), "{sql} was allowed");
    }
    assert_eq!(s.scalar("SELECT count(*) FROM events"), "3");
}

#[test]
fn partition_columns_prune_and_filter() {
    let s = lake_with_three_events();
    assert_eq!(
        s.scalar("SELECT count(*) FROM events WHERE event_date = DATE '2026-11-21'"),
        "1"
    );
    assert_eq!(
        s.scalar("SELECT count(*) FROM events WHERE community_id = 'c1'"),
        "3"
    );
}
