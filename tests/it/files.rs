//! Files and data where they belong (issue 19, items 8–14): ranked-list CSV safe to open in a
//! spreadsheet, export folders that do not follow symlinks out, owner-only lake and state
//! files, personal data scrubbed from properties and quarantine, files still being written
//! left alone, empty ranked lists, staging shared by concurrent writers, config paths checked
//! and sink credentials redacted.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{e, files_below, Scratch};

const BASE: &str = r#"
lake = "lake"
state_dir = "state"

[[communities]]
id = "c1"
timezone = "UTC"
"#;

/// Three weeks of check-ins by each of `members`.
fn active(s: &Scratch, members: &[&str]) {
    let mut events = Vec::new();
    for m in members {
        events.push(e(m, "join", "2026-10-01T10:00:00Z"));
        for d in 10..=20 {
            events.push(e(m, "checkin", &format!("2026-11-{d}T09:00:00Z")));
        }
    }
    s.import(&events);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn text_below(dir: &Path) -> String {
    files_below(dir)
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

// Item 8.
#[test]
fn ranked_list_csv_cells_are_not_spreadsheet_formulas() {
    let s = Scratch::new();
    s.config(&format!(
        "{BASE}\n[[sinks]]\nkind = \"file\"\npath = \"lists\"\nformats = [\"csv\"]\n"
    ));
    let members = ["=1+1", "+SUM(A1)", "-2", "@cmd", "alice"];
    active(&s, &members);
    s.run("2026-11-23");
    let csv = std::fs::read_to_string(s.path("lists/c1/2026-11-23.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let column = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "member_id")
        .unwrap();
    let mut ids: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[column].to_string())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["'+SUM(A1)", "'-2", "'=1+1", "'@cmd", "alice"],
        "{csv}"
    );
}

// Item 13: an empty ranked list.
#[test]
fn a_community_with_an_empty_ranked_list_gets_an_empty_file() {
    let s = Scratch::new();
    s.config(&format!(
        "{BASE}\n[[communities]]\nid = \"c9\"\n\n[[sinks]]\nkind = \"file\"\npath = \"lists\"\nformats = [\"csv\", \"json\", \"parquet\"]\n"
    ));
    active(&s, &["alice"]);
    let out = s.pulse(&["run", "--as-of", "2026-11-23"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(s.path("lists/c9/2026-11-23.csv")).unwrap();
    assert!(csv.starts_with("rank,member_id,"), "{csv}");
    assert_eq!(csv.lines().count(), 1, "{csv}");
    assert_eq!(
        std::fs::read_to_string(s.path("lists/c9/2026-11-23.json")).unwrap(),
        "[]\n"
    );
    assert!(s.path("lists/c9/2026-11-23.parquet").exists());
    assert!(s.path("lists/c1/2026-11-23.csv").exists());
}

// Item 13: staging shared by concurrent writers.
#[test]
fn reports_written_during_imports_are_not_lost() {
    let s = Scratch::new();
    s.config(BASE);
    active(&s, &["alice", "bob"]);
    s.run("2026-11-23");
    let batch = s.write(
        "more.ndjson",
        &crate::common::event("x1", "carol", "post", "2026-11-21T10:00:00Z"),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let importer = {
        let (stop, lake, batch) = (stop.clone(), s.lake(), batch.clone());
        let dir = s.dir.path().to_path_buf();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_pulse"))
                    .current_dir(&dir)
                    .arg("--lake")
                    .arg(&lake)
                    .arg("import")
                    .arg(&batch)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
            }
        })
    };
    let reports: Vec<_> = (0..6)
        .map(|_| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pulse"));
            cmd.current_dir(s.dir.path())
                .arg("--lake")
                .arg(s.lake())
                .args(["report", "--as-of", "2026-11-23"]);
            std::thread::spawn(move || cmd.output().unwrap())
        })
        .collect();
    let failed: Vec<String> = reports
        .into_iter()
        .map(|r| r.join().unwrap())
        .filter(|o| !o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    importer.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} reports failed: {failed:?}",
        failed.len()
    );
}

// Item 9.
#[test]
fn export_folders_do_not_follow_symlinks_out_and_files_are_owner_only() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("drop")).unwrap();
    let secret = s.write("secrets.env", "API_KEY=hunter2-very-secret\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&secret, s.path("drop/secrets.ndjson")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", s.path("drop/passwd.ndjson")).unwrap();
    std::fs::write(
        s.path("drop/good.ndjson"),
        crate::common::event("g1", "ann", "post", "2026-11-20T10:00:00Z") + "\nnot json\n",
    )
    .unwrap();
    s.config(&format!(
        "{BASE}\n[[ingest.exports]]\npath = \"drop\"\nformat = \"ndjson\"\ncommunity = \"c1\"\n"
    ));
    let out = s.pulse(&["run", "--as-of", "2026-11-23"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("symlink"),
        "a warning names the link: {stderr}"
    );
    let quarantine = text_below(&s.path("lake/quarantine"));
    assert!(!quarantine.contains("root:"), "{quarantine}");
    assert!(!quarantine.contains("hunter2"), "{quarantine}");
    let picked = std::fs::read_to_string(s.path("state/exports.jsonl")).unwrap();
    assert_eq!(picked.lines().count(), 1, "{picked}");
    assert!(picked.contains("good.ndjson"), "{picked}");
    // What pulse wrote is readable by its owner only.
    let written: Vec<_> = files_below(&s.path("lake/quarantine"))
        .into_iter()
        .chain(files_below(&s.path("lake/events")))
        .chain(files_below(&s.path("state")))
        .collect();
    assert!(written.len() > 3, "{written:?}");
    for f in &written {
        assert_eq!(mode(f) & 0o077, 0, "{} is {:o}", f.display(), mode(f));
    }
    for d in ["lake", "lake/quarantine", "lake/events", "state"] {
        assert_eq!(mode(&s.path(d)) & 0o077, 0, "{d} is {:o}", mode(&s.path(d)));
    }
}

// Item 10.
#[test]
fn personal_data_is_scrubbed_from_properties_and_quarantine() {
    let s = Scratch::new();
    let good = e("ann", "post", "2026-11-20T10:00:00Z").set(
        "properties",
        serde_json::json!({
            "plan": "gold",
            "emailAddress": "ann@example.com",
            "firstName": "Annabel",
            "contact_email": "ann.contact@example.com",
            "ipAddress": "10.1.2.3",
            "Last-Name": "Lovelace",
            "channel_name": "general",
            "profile": {"PhoneNumber": "+86 138 0000 0000", "level": 3},
        }),
    );
    let bad_json = e("bob", "Post", "2026-11-20T10:00:00Z")
        .set("email", "bob@example.com")
        .set("full_name", "Bobby Tables");
    let text = format!(
        "{}\n{}\nbob@example.com,Bobby Tables,not json\n",
        good.json(),
        bad_json.json()
    );
    let file = s.write("in.ndjson", &text);
    let out = s.pulse(&["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let props = s.ok(&["query", "--format", "csv", "SELECT properties FROM events"]);
    for leaked in [
        "ann@example.com",
        "Annabel",
        "ann.contact",
        "10.1.2.3",
        "Lovelace",
        "138",
    ] {
        assert!(!props.contains(leaked), "{leaked} in {props}");
    }
    assert!(
        props.contains("gold") && props.contains("general") && props.contains("level"),
        "{props}"
    );
    let quarantine = text_below(&s.path("lake/quarantine"));
    for leaked in ["bob@example.com", "Bobby", "Tables"] {
        assert!(!quarantine.contains(leaked), "{leaked} in {quarantine}");
    }
    let records: Vec<serde_json::Value> = quarantine
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{quarantine}");
    assert_eq!(records[0]["line"], 2);
    assert!(
        records[0]["reason"].as_str().unwrap().contains("email"),
        "{quarantine}"
    );
    assert_eq!(records[1]["line"], 3);
    assert!(records[1]["reason"]
        .as_str()
        .unwrap()
        .contains("invalid JSON"));
}

// Item 11.
#[test]
fn a_file_still_being_written_is_not_imported_truncated() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("drop")).unwrap();
    s.config(&format!(
        "{BASE}\n[[ingest.exports]]\npath = \"drop\"\nformat = \"csv\"\ncommunity = \"c1\"\n"
    ));
    // Cut after `12` of `1299`, the file is a valid CSV file with a wrong price.
    let full =
        "event_id,source,community_id,member_id,event_type,occurred_at,currency,amount_minor\n\
                p1,shop,c1,ann,purchase,2026-11-20T10:00:00Z,CNY,1299\n";
    let cut = full.find("99\n").unwrap();
    let file = s.path("drop/orders.csv");
    std::fs::write(&file, &full[..cut]).unwrap();
    // The writer finishes the file while the first run is going on.
    let writer = {
        let (file, rest) = (file.clone(), full[cut..].to_string());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(2));
            use std::io::Write;
            let mut f = std::fs::File::options().append(true).open(file).unwrap();
            f.write_all(rest.as_bytes()).unwrap();
        })
    };
    let first = s.pulse(&["run", "--as-of", "2026-11-23"]);
    writer.join().unwrap();
    assert!(first.status.success(), "{first:?}");
    s.run("2026-11-23");
    let amounts = s.rows("SELECT amount_minor FROM events WHERE event_id = 'p1'");
    assert_eq!(amounts, [["1299"]]);
}

// Item 14.
#[test]
fn check_config_names_missing_paths_and_out_of_range_keys() {
    let s = Scratch::new();
    let cases = [
        ("[report]\ntemplates = \"no-such-dir\"\n", "report.templates"),
        (
            "[ingest]\nidentities = \"no-such-file.csv\"\n",
            "ingest.identities",
        ),
        (
            "[[ingest.exports]]\npath = \"no-such-folder\"\nformat = \"ndjson\"\ncommunity = \"c1\"\n",
            "ingest.exports[0].path",
        ),
        (
            "[defaults]\nwindow_days = 99999999999\n",
            "defaults.window_days",
        ),
        (
            "[engine]\ntarget_partitions = 99999999999999999999\n",
            "engine.target_partitions",
        ),
        (
            "[[sinks]]\nkind = \"webhook\"\nurl = \"https://h/x\"\nsecret_env = \"S\"\ntimeout_secs = -5\n",
            "sinks[0].timeout_secs",
        ),
    ];
    for (text, key) in cases {
        let file = s.write("bad.toml", text);
        let out = s.pulse(&["--config", file.to_str().unwrap(), "check-config"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {err}");
        assert!(
            err.contains("bad.toml") && err.contains(&format!("key `{key}`")),
            "{text:?}: {err}"
        );
    }
}

// Item 14.
#[test]
fn sink_url_credentials_are_not_recorded_or_logged() {
    let s = Scratch::new();
    s.config(&format!(
        "{BASE}\n[[sinks]]\nkind = \"webhook\"\nurl = \"http://hook:hunter2@127.0.0.1:9/x\"\nsecret_env = \"PULSE_TEST_SINK_SECRET\"\nmax_attempts = 1\n"
    ));
    active(&s, &["alice"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pulse"))
        .current_dir(s.dir.path())
        .env(
            "PULSE_TEST_SINK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .args(["run", "--as-of", "2026-11-23"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let shown = format!(
        "{}{}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(s.path("state/deliveries.jsonl")).unwrap(),
        text_below(&s.path("state"))
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("http://hook:***@127.0.0.1:9/x"), "{shown}");
}
