//! Spreadsheets through a mapping (issue 17): UTF-8 CSV, GBK CSV and xlsx rows import to the
//! same events, once; export-folder pickup; the edge cases of cells, times and amounts; the
//! quarantine naming file, sheet and row; personal columns refused; `--dry-run`.

use std::path::{Path, PathBuf};

use crate::common::Scratch;

const ORDERS: &str = r#"
[table]
sheet = "订单"
header_row = 1
encoding = "auto"
timezone = "Asia/Shanghai"
timestamp_format = "%Y-%m-%d %H:%M:%S"

[columns]
community_id = { value = "python-camp" }
source = { value = "xiaoe" }
event_id = "订单号"
member_id = "用户ID"
occurred_at = "支付时间"
event_type = { column = "订单状态", map = { "已支付" = "purchase", "已退款" = "refund" } }
content_id = "商品ID"
amount_minor = { column = "实付金额", scale = 100 }
currency = { value = "CNY" }

[properties]
channel = "渠道"
"#;

const HEADER: [&str; 8] = [
    "订单号",
    "用户ID",
    "手机号",
    "支付时间",
    "订单状态",
    "商品ID",
    "实付金额",
    "渠道",
];

/// (order, member, phone, paid at, status, product, amount as CSV text, amount as a number,
/// channel)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    f64,
    &'static str,
);

const ROWS: [Row; 3] = [
    (
        "o1",
        "u1",
        "13800000001",
        "2026-11-20 09:30:00",
        "已支付",
        "p1",
        "99.00",
        99.0,
        "公众号",
    ),
    (
        "o2",
        "u2",
        "13800000002",
        "2026-11-21 23:15:00",
        "已支付",
        "p2",
        "1,299.00",
        1299.0,
        "小程序",
    ),
    (
        "o3",
        "u1",
        "13800000001",
        "2026-11-22 00:05:00",
        "已退款",
        "p1",
        "0.1",
        0.1,
        "公众号",
    ),
];

fn orders_csv() -> String {
    let mut out = HEADER.join(",") + "\r\n";
    for (o, m, phone, at, status, p, amount, _, channel) in ROWS {
        out += &format!("{o},{m},{phone},{at},{status},{p},\"{amount}\",{channel}\r\n");
    }
    out
}

/// An Excel serial date (days since 1899-12-30, the time as a fraction of a day).
fn serial(at: &str) -> f64 {
    let t = chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S").unwrap();
    let epoch = chrono::NaiveDate::from_ymd_opt(1899, 12, 30)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    (t - epoch).num_seconds() as f64 / 86_400.0
}

/// The orders as a workbook: a notes sheet first, then `订单` with dates stored as Excel serial
/// numbers in a date format and amounts as numbers.
fn orders_xlsx(path: &Path) {
    let mut book = rust_xlsxwriter::Workbook::new();
    let date = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    book.add_worksheet()
        .set_name("说明")
        .unwrap()
        .write_string(0, 0, "导出说明")
        .unwrap();
    let sheet = book.add_worksheet();
    sheet.set_name("订单").unwrap();
    for (c, h) in HEADER.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for (i, (o, m, phone, at, status, p, _, amount, channel)) in ROWS.into_iter().enumerate() {
        let r = i as u32 + 1;
        sheet.write_string(r, 0, o).unwrap();
        sheet.write_string(r, 1, m).unwrap();
        sheet.write_string(r, 2, phone).unwrap();
        sheet
            .write_number_with_format(r, 3, serial(at), &date)
            .unwrap();
        sheet.write_string(r, 4, status).unwrap();
        sheet.write_string(r, 5, p).unwrap();
        sheet.write_number(r, 6, amount).unwrap();
        sheet.write_string(r, 7, channel).unwrap();
    }
    book.save(path).unwrap();
}

fn import(s: &Scratch, mapping: &Path, file: &Path) -> std::process::Output {
    s.pulse(&[
        "import",
        "--format",
        "table",
        "--mapping",
        mapping.to_str().unwrap(),
        file.to_str().unwrap(),
    ])
}

const EVENTS: &str = "SELECT event_id, source, community_id, member_id, event_type, \
    CAST(occurred_at AS VARCHAR), content_id, CAST(amount_minor AS VARCHAR), currency, \
    properties FROM events ORDER BY event_id";

#[test]
fn utf8_csv_gbk_csv_and_xlsx_import_to_identical_events_once() {
    let mut lakes = Vec::new();
    for kind in ["utf8", "gbk", "xlsx"] {
        let s = Scratch::new();
        let mapping = s.write("orders.toml", ORDERS);
        let file: PathBuf = match kind {
            // With a BOM before the first header.
            "utf8" => s.write("orders.csv", &format!("\u{feff}{}", orders_csv())),
            "gbk" => {
                let text = orders_csv();
                let (bytes, _, bad) = encoding_rs::GBK.encode(&text);
                assert!(!bad);
                assert!(std::str::from_utf8(&bytes).is_err(), "really not UTF-8");
                let p = s.path("orders.csv");
                std::fs::write(&p, &bytes).unwrap();
                p
            }
            _ => {
                let p = s.path("orders.xlsx");
                orders_xlsx(&p);
                p
            }
        };
        let out = import(&s, &mapping, &file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kind}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("read 3 · imported 3 · duplicate 0 · quarantined 0"),
            "{kind}: {stdout}"
        );
        // Importing the same file again changes nothing.
        let again = import(&s, &mapping, &file);
        let stdout = String::from_utf8_lossy(&again.stdout);
        assert!(
            stdout.contains("read 3 · imported 0 · duplicate 3 · quarantined 0"),
            "{kind}: {stdout}"
        );
        lakes.push((kind, s.rows(EVENTS)));
    }
    let (_, first) = &lakes[0];
    assert_eq!(
        first[0],
        [
            "o1",
            "xiaoe",
            "python-camp",
            "u1",
            "purchase",
            "2026-11-20T01:30:00Z",
            "p1",
            "9900",
            "CNY",
            r#"{"channel":"公众号"}"#
        ]
    );
    assert_eq!(first[1][7], "129900", "1,299.00 yuan");
    assert_eq!(first[1][5], "2026-11-21T15:15:00Z");
    assert_eq!(first[2][4], "refund");
    assert_eq!(first[2][7], "10", "0.1 yuan");
    assert!(
        !format!("{first:?}").contains("138000"),
        "the phone column is not mapped, so not imported"
    );
    for (kind, rows) in &lakes[1..] {
        assert_eq!(rows, first, "{kind} differs from the UTF-8 CSV");
    }
}

const SHEET: &str = r#"
[table]
header_row = 3
timezone = "America/New_York"

[columns]
community_id = { value = "c1" }
source = { value = "sheet" }
member_id = "member"
occurred_at = "time"
event_type = { column = "status", map = { "paid" = "purchase", "posted" = "post" } }
amount_minor = { column = "amount", scale = 100 }
currency = { value = "USD" }
body = "note"

[properties]
plan = "plan"
"#;

/// A BOM, a title row and a blank row above the header, a quoted line break, amounts with
/// thousands separators and decimals, a DST gap and a DST repeat, an unknown status, too many
/// decimals, and empty rows at the end.
const EDGES: &str = "\u{feff}Exported by Sheets,,,,,,\n\
,,,,,,\n\
member,time,status,amount,note,plan,email\n\
m1,2026-11-23 09:30:00,paid,\"1,299.00\",\"two\nlines\",gold,m1@example.com\n\
m2,2026-11-23 10:00:00,paid,0.1,,,m2@example.com\n\
m3,2026-03-08 02:30:00,posted,,,,m3@example.com\n\
m4,2026-11-01 01:30:00,posted,,,,m4@example.com\n\
m5,2026-11-23 11:00:00,refunded,,,,m5@example.com\n\
m6,2026-11-23 12:00:00,paid,0.125,,,m6@example.com\n\
m7,2026-11-23T13:00:00-05:00,posted,,,,m7@example.com\n\
,,,,,,\n\
,,,,,,\n";

#[test]
fn edge_cases_import_or_go_to_quarantine_with_file_row_and_reason() {
    let s = Scratch::new();
    let mapping = s.write("sheet.toml", SHEET);
    let file = s.write("sheet.csv", EDGES);
    let out = import(&s, &mapping, &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("read 7 · imported 3 · duplicate 0 · quarantined 4"),
        "{stdout}"
    );
    let rows = s.rows(
        "SELECT member_id, event_type, CAST(occurred_at AS VARCHAR), CAST(amount_minor AS VARCHAR), body, properties FROM events ORDER BY member_id",
    );
    assert_eq!(
        rows[0],
        [
            "m1",
            "purchase",
            "2026-11-23T14:30:00Z",
            "129900",
            "two\nlines",
            r#"{"plan":"gold"}"#
        ]
    );
    assert_eq!(rows[1][3], "10");
    assert_eq!(rows[2][0], "m7");
    assert_eq!(rows[2][2], "2026-11-23T18:00:00Z");
    // Without an event_id column, ids are stable hashes of the rows' cells.
    let ids = s.rows("SELECT event_id FROM events ORDER BY event_id");
    assert!(ids.iter().all(|r| r[0].starts_with("row-")), "{ids:?}");
    let again = import(&s, &mapping, &file);
    assert!(String::from_utf8_lossy(&again.stdout).contains("imported 0 · duplicate 3"));

    let q = s.quarantine();
    // The second import quarantined the same rows again, into the same quarantine file.
    let first: Vec<_> = q.iter().collect();
    let expected = [
        (6, "does not exist in America/New_York"),
        (7, "happens twice in America/New_York"),
        (
            8,
            "`refunded` in column `status` is not in the mapping's map",
        ),
        (9, "more decimals than scale 100 allows"),
    ];
    assert_eq!(first.len(), expected.len(), "{q:?}");
    for (r, (line, reason)) in first.iter().zip(expected) {
        assert_eq!(r["line"], line, "{r}");
        assert!(r["reason"].as_str().unwrap().contains(reason), "{r}");
        assert!(r["file"].as_str().unwrap().ends_with("sheet.csv"), "{r}");
        let raw = r["raw"].as_str().unwrap();
        assert!(raw.contains("member"), "{raw}");
        assert!(
            !raw.contains("example.com"),
            "personal cells are left out: {raw}"
        );
    }
}

#[test]
fn xlsx_quarantine_names_the_sheet_and_row() {
    let s = Scratch::new();
    let mapping = s.write("orders.toml", ORDERS);
    let path = s.path("orders.xlsx");
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("订单").unwrap();
    for (c, h) in HEADER.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    // Row 2: an unknown status; row 4 (row 3 left blank): a text date.
    for (r, status, at) in [
        (1, "待支付", "2026-11-20 09:30:00"),
        (3, "已支付", "2026-11-21 08:00:00"),
    ] {
        sheet.write_string(r, 0, format!("o{r}")).unwrap();
        sheet.write_string(r, 1, "u1").unwrap();
        sheet.write_string(r, 3, at).unwrap();
        sheet.write_string(r, 4, status).unwrap();
        sheet.write_string(r, 6, "5").unwrap();
    }
    book.save(&path).unwrap();
    let out = import(&s, &mapping, &path);
    assert_eq!(out.status.code(), Some(3));
    let q = s.quarantine();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["line"], 2);
    assert_eq!(q[0]["file"], format!("{} (sheet 订单)", path.display()));
    assert!(
        q[0]["reason"].as_str().unwrap().contains("`待支付`"),
        "{q:?}"
    );
    assert_eq!(
        s.rows("SELECT event_id, CAST(occurred_at AS VARCHAR), CAST(amount_minor AS VARCHAR) FROM events"),
        [["o3", "2026-11-21T00:00:00Z", "500"]]
    );
}

#[test]
fn dry_run_shows_events_and_reasons_and_writes_nothing() {
    let s = Scratch::new();
    let mapping = s.write("sheet.toml", SHEET);
    let file = s.write("sheet.csv", EDGES);
    let out = s.pulse(&[
        "import",
        "--format",
        "table",
        "--mapping",
        mapping.to_str().unwrap(),
        "--dry-run",
        file.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains(r#""member_id":"m1""#), "{stdout}");
    assert!(stdout.contains("sheet.csv row 8: `refunded`"), "{stdout}");
    assert!(
        stdout.contains("3 rows would be imported (before dedupe), 4 rejected"),
        "{stdout}"
    );
    assert!(!s.lake().join("events").exists(), "nothing written");
}

#[test]
fn an_export_folder_of_spreadsheets_is_imported_once() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("drop")).unwrap();
    s.write("orders.toml", ORDERS);
    orders_xlsx(&s.path("drop/orders.xlsx"));
    s.config(
        "lake = \"lake\"\nstate_dir = \"state\"\n\n[[communities]]\nid = \"python-camp\"\ntimezone = \"Asia/Shanghai\"\n\n\
         [[ingest.exports]]\npath = \"drop\"\nformat = \"table\"\ncommunity = \"python-camp\"\nmapping = \"orders.toml\"\n",
    );
    s.ok(&["check-config"]);
    for _ in 0..2 {
        let out = s.pulse(&["run", "--as-of", "2026-11-23"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let picked = std::fs::read_to_string(s.path("state/exports.jsonl")).unwrap();
    assert_eq!(picked.lines().count(), 1, "{picked}");
    assert!(picked.contains("\"imported\":3"), "{picked}");
    assert_eq!(s.scalar("SELECT COUNT(*) FROM events"), "3");
}

#[test]
fn mappings_of_personal_columns_are_refused_by_check_config_and_import() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("drop")).unwrap();
    let personal = ORDERS.replace("channel = \"渠道\"", "phone = \"手机号\"");
    let mapping = s.write("orders.toml", &personal);
    s.config(
        "[[ingest.exports]]\npath = \"drop\"\nformat = \"table\"\ncommunity = \"python-camp\"\nmapping = \"orders.toml\"\n",
    );
    let out = s.pulse(&["check-config"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("orders.toml") && err.contains("properties.phone") && err.contains("personal"),
        "{err}"
    );
    let file = s.write("orders.csv", &orders_csv());
    let out = import(&s, &mapping, &file);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("properties.phone"));

    // A table folder needs a mapping; a mapping needs a table folder.
    s.config("[[ingest.exports]]\npath = \"drop\"\nformat = \"table\"\ncommunity = \"c1\"\n");
    let err = String::from_utf8_lossy(&s.pulse(&["check-config"]).stderr).to_string();
    assert!(err.contains("ingest.exports[0].mapping"), "{err}");
}

#[test]
fn shipped_example_mappings_load() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/mappings");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            pulse::ingest::table::Mapping::load(&p).unwrap_or_else(|e| panic!("{e}"));
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                text.contains("example"),
                "{} says it is an example",
                p.display()
            );
            n += 1;
        }
    }
    assert_eq!(n, 3);
}
