//! The schedule across processes: the run lock, a stale lock, resumable backfill, and
//! `pulse serve` for real with a cron that fires every two seconds, stopped by SIGTERM.
//! (Cron in timezones, DST, catch-up and retries are unit tests with an injected clock in
//! src/schedule/mod.rs.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{e, Scratch};

const CONFIG: &str = r#"
lake = "lake"
state_dir = "state"

[[communities]]
id = "c1"
timezone = "Asia/Shanghai"
report_to = ["ops@example.com"]
"#;

fn community(config: &str) -> Scratch {
    let s = Scratch::new();
    s.config(config);
    let mut events = Vec::new();
    for d in 1..=20 {
        events.push(e(
            "alice",
            "checkin",
            &format!("2026-11-{d:02}T09:00:00+08:00"),
        ));
        events.push(e("bob", "post", &format!("2026-11-{d:02}T10:00:00+08:00")));
    }
    s.import(&events);
    s
}

fn runs(s: &Scratch) -> Vec<serde_json::Value> {
    std::fs::read_to_string(s.path("state/runs.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[test]
fn runs_do_not_overlap_across_processes_and_a_stale_lock_does_not_block() {
    let s = community(CONFIG);
    std::fs::create_dir_all(s.path("state")).unwrap();
    // Another process holds the run lock (this test process, through the OS).
    std::fs::write(
        s.path("state/run.lock"),
        "pid 4242 since 2026-11-23T01:00:00Z",
    )
    .unwrap();
    let held = std::fs::File::options()
        .write(true)
        .open(s.path("state/run.lock"))
        .unwrap();
    held.lock().unwrap();
    let out = s.pulse(&["run", "--as-of", "2026-11-21"]);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another pulse run is in progress (pid 4242"),
        "{err}"
    );
    let out = s.pulse(&["backfill", "--from", "2026-11-20", "--to", "2026-11-21"]);
    assert_eq!(out.status.code(), Some(5));
    // The holder dies (here: unlocks); the file and its stale content stay, and do not block.
    drop(held);
    assert!(s.path("state/run.lock").exists());
    let out = s.run("2026-11-21");
    assert!(out.contains("c1 as_of 2026-11-21"), "{out}");
    let history = s.ok(&["runs"]);
    assert!(
        history.contains("manual") && history.contains("succeeded"),
        "{history}"
    );
}

#[test]
fn backfill_resumes_after_a_kill() {
    let s = community(CONFIG);
    let args = ["backfill", "--from", "2026-11-05", "--to", "2026-11-12"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .current_dir(s.dir.path())
        .env_remove("PULSE_CONFIG")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let finished = |s: &Scratch| {
        runs(s)
            .iter()
            .filter(|r| r["kind"] == "backfill" && r["status"] == "succeeded")
            .count()
    };
    wait_for("two backfilled days", || finished(&s) >= 2);
    signal(&child, "-KILL");
    child.wait().unwrap();
    let before = finished(&s);
    assert!(before < 8, "the backfill finished before it was killed");
    let out = s.ok(&args);
    assert!(
        out.contains(&format!(
            "{} computed, {before} already done, 0 failed",
            8 - before
        )),
        "{out}"
    );
    // Every day has its metrics, and no email was sent (models only).
    let days = s.scalar("SELECT count(DISTINCT as_of) FROM kpis");
    assert_eq!(days, "8");
    assert!(!s.path("state/outbox").exists());
    let again = s.ok(&args);
    assert!(again.contains("0 computed, 8 already done"), "{again}");
}

#[test]
fn serve_runs_on_schedule_and_stops_cleanly_on_sigterm() {
    let s = community(&format!(
        "{CONFIG}\n[report]\nschedule = \"*/2 * * * * *\"\n"
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .current_dir(s.dir.path())
        .env_remove("PULSE_CONFIG")
        .args(["--log-format", "json", "serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let scheduled = |s: &Scratch, status: &str| {
        runs(s)
            .iter()
            .filter(|r| r["kind"] == "scheduled" && r["status"] == status)
            .count()
    };
    wait_for("a scheduled run to succeed", || {
        scheduled(&s, "succeeded") >= 1
    });
    // SIGTERM while the next run is going: it finishes, then serve exits 0.
    wait_for("the next scheduled run to start", || {
        scheduled(&s, "running") > scheduled(&s, "succeeded")
    });
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    let mut logs = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut logs).unwrap();
    assert!(status.success(), "serve exited {status:?}: {logs}");
    assert!(logs.contains("scheduler stopped"), "{logs}");
    assert!(
        logs.lines().all(|l| l.starts_with('{')),
        "json logs: {logs}"
    );
    let latest = latest_per_run(&runs(&s));
    assert!(
        latest.iter().all(|r| r["status"] != "running"),
        "no run is left running: {latest:?}"
    );
    // Only directories replaced in the last minute (kept for readers) may be left.
    assert!(!std::fs::read_dir(s.path("lake/_staging"))
        .map(|d| d
            .flatten()
            .any(|e| !e.file_name().to_string_lossy().starts_with("replaced-")))
        .unwrap_or(false));
    // The scheduled runs produced the report and the email of today's as_of.
    let today = scheduled_as_of(&runs(&s));
    assert!(s
        .path(&format!("lake/reports/c1/{today}/report.html"))
        .is_file());
    assert!(s.path(&format!("state/outbox/c1/{today}")).is_dir());
    let status = s.ok(&["status"]);
    assert!(
        status.contains("c1") && status.contains("CST") && status.contains("succeeded"),
        "{status}"
    );
}

fn scheduled_as_of(records: &[serde_json::Value]) -> String {
    records
        .iter()
        .find(|r| r["kind"] == "scheduled" && r["status"] == "succeeded")
        .map(|r| r["as_of"].as_str().unwrap().to_string())
        .unwrap()
}

/// The latest record of each run_id.
fn latest_per_run(records: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut by_id = std::collections::BTreeMap::new();
    for r in records {
        by_id.insert(r["run_id"].as_str().unwrap().to_string(), r.clone());
    }
    by_id.into_values().collect()
}
