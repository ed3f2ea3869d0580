//! Helpers shared by the integration tests: a scratch directory with a lake, and `pulse` runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn lake(&self) -> PathBuf {
        self.path("lake")
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// `pulse --lake <scratch>/lake ARGS…` run in the scratch directory (no config file there).
    pub fn pulse(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pulse"));
        cmd.current_dir(self.dir.path())
            .env_remove("PULSE_CONFIG")
            .env_remove("PULSE_LAKE")
            .arg("--lake")
            .arg(self.lake())
            .args(args);
        cmd.output().expect("run pulse")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.pulse(args);
        assert!(
            out.status.success(),
            "pulse {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// `pulse query --format csv SQL` as rows of fields (header dropped).
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let out = self.ok(&["query", "--format", "csv", sql]);
        let mut reader = csv::Reader::from_reader(out.as_bytes());
        reader
            .records()
            .map(|r| r.expect("csv").iter().map(str::to_string).collect())
            .collect()
    }

    /// A single value from `pulse query`.
    pub fn scalar(&self, sql: &str) -> String {
        let rows = self.rows(sql);
        assert_eq!(rows.len(), 1, "{sql} gave {rows:?}");
        rows[0][0].clone()
    }
}

/// Every `*.parquet` file below `dir`, relative and sorted.
pub fn parquet_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// One canonical NDJSON line.
pub fn event(id: &str, member: &str, kind: &str, at: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","source":"generic","community_id":"c1","member_id":"{member}","event_type":"{kind}","occurred_at":"{at}"}}"#
    )
}
