//! Helpers shared by the integration tests: a scratch directory with a lake; `pulse` runs as a
//! process (for what the command line does) and the library called in process (imports,
//! model runs and queries, for what the numbers are).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Scratch {
    pub dir: tempfile::TempDir,
    backend: Backend,
}

/// The engine a test's `pulse` runs use (`[engine] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    #[cfg_attr(not(feature = "ballista"), allow(dead_code))]
    BallistaStandalone,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch::on(Backend::Local)
    }

    /// A scratch directory whose config runs the models on `backend`.
    pub fn on(backend: Backend) -> Scratch {
        let s = Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
            backend,
        };
        if backend != Backend::Local {
            s.config("");
        }
        s
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

    /// The scratch's config (`config/pulse.toml`, or the defaults) as the library sees it when
    /// called in process: the scratch's lake, and relative paths taken from the scratch dir.
    pub fn library_config(&self) -> (pulse::config::Config, pulse::lake::Lake) {
        let file = self.path("config/pulse.toml");
        let mut config = if file.exists() {
            pulse::config::Config::load(Some(&file)).expect("config").0
        } else {
            pulse::config::Config::default_config()
        };
        config.state_dir = self.dir.path().join(&config.state_dir);
        let lake = pulse::lake::Lake::open(self.lake().to_str().unwrap()).expect("lake");
        (config, lake)
    }

    /// Run `future` on a runtime like the one `pulse` uses.
    pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    /// Compute every metric table for `as_of` in process (the pipeline of `pulse run`, without
    /// email or sinks unless configured): what each community's run produced.
    pub fn compute(&self, as_of: &str) -> Vec<pulse::models::CommunityRun> {
        self.compute_only(as_of, None)
    }

    /// [`Scratch::compute`] for one community.
    pub fn compute_only(
        &self,
        as_of: &str,
        community: Option<&str>,
    ) -> Vec<pulse::models::CommunityRun> {
        let (config, lake) = self.library_config();
        let as_of = as_of.parse().expect("as_of date");
        let runs = Self::block_on(pulse::pipeline::run_now(
            &config,
            &lake,
            Some(as_of),
            community,
            pulse::pipeline::DeliverOptions::default(),
        ))
        .expect("run");
        runs.into_iter()
            .map(|r| {
                assert!(r.ok(), "run failed: {:?}", r.record);
                r.models.expect("models ran")
            })
            .collect()
    }

    /// A query's result as CSV text (`pulse query --format csv`), in process on the local
    /// engine, through the `pulse` process on other backends.
    fn query_csv(&self, sql: &str) -> String {
        if self.backend != Backend::Local {
            return self.ok(&["query", "--format", "csv", sql]);
        }
        let (config, lake) = self.library_config();
        let (schema, batches) = Self::block_on(async {
            let ctx = pulse::engine::session(&config.engine, &lake).await?;
            pulse::engine::query(&ctx, sql).await
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut out = Vec::new();
        pulse::cli::output::write_csv(&mut out, schema, &batches).expect("csv");
        String::from_utf8(out).expect("utf-8")
    }

    /// A query's rows as fields (header dropped).
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let out = self.query_csv(sql);
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

/// A canonical event under construction (see [`e`]).
pub struct E(serde_json::Map<String, serde_json::Value>);

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// An event of community `c1` with a fresh event_id.
pub fn e(member: &str, kind: &str, at: &str) -> E {
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut m = serde_json::Map::new();
    m.insert("event_id".into(), format!("ev{id}").into());
    m.insert("source".into(), "generic".into());
    m.insert("community_id".into(), "c1".into());
    m.insert("member_id".into(), member.into());
    m.insert("event_type".into(), kind.into());
    m.insert("occurred_at".into(), at.into());
    E(m)
}

impl E {
    pub fn set(mut self, key: &str, value: impl Into<serde_json::Value>) -> E {
        self.0.insert(key.into(), value.into());
        self
    }
    /// The event as one NDJSON line (without the newline).
    pub fn json(&self) -> String {
        serde_json::Value::Object(self.0.clone()).to_string()
    }
    /// Engagement with `target`'s content.
    pub fn to(self, target: &str) -> E {
        self.set("target_member_id", target)
    }
}

/// Check-ins by `member` at noon UTC on days `days` of `month` (YYYY-MM).
pub fn checkins(member: &str, month: &str, days: impl IntoIterator<Item = u32>) -> Vec<E> {
    days.into_iter()
        .map(|d| e(member, "checkin", &format!("{month}-{d:02}T12:00:00Z")))
        .collect()
}

impl Scratch {
    /// Write `config/pulse.toml` (the default config path; pulse runs in the scratch dir),
    /// with the scratch's engine backend.
    pub fn config(&self, text: &str) {
        let engine = match self.backend {
            Backend::Local => "",
            Backend::BallistaStandalone => "\n[engine]\nbackend = \"ballista-standalone\"\n",
        };
        std::fs::create_dir_all(self.path("config")).unwrap();
        std::fs::write(self.path("config/pulse.toml"), format!("{text}{engine}")).unwrap();
    }

    /// Import these events (as one NDJSON file).
    pub fn import(&self, events: &[E]) {
        let text: String = events
            .iter()
            .map(|e| serde_json::Value::Object(e.0.clone()).to_string() + "\n")
            .collect();
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let f = self.write(&format!("batch{id}.ndjson"), &text);
        let (_, lake) = self.library_config();
        let stats = pulse::ingest::files::import_files(
            &lake,
            &[f],
            pulse::ingest::files::InputFormat::Auto,
            pulse::lake::events::WriterOptions::default(),
        )
        .expect("import");
        assert_eq!(stats.quarantined, 0, "{stats:?}");
    }

    /// `pulse generate` two communities of `members` members over `days` days ending on `end`
    /// (inclusive), and `pulse import` them.
    pub fn import_generated(&self, members: u32, days: u32, end: &str) {
        let events = self.path("generated.ndjson");
        let (members, days) = (members.to_string(), days.to_string());
        self.ok(&[
            "generate",
            "--members",
            &members,
            "--days",
            &days,
            "--communities",
            "2",
            "--end",
            end,
            "--out",
            events.to_str().unwrap(),
        ]);
        self.ok(&["import", events.to_str().unwrap()]);
    }

    /// `pulse run --as-of D`.
    pub fn run(&self, as_of: &str) -> String {
        self.ok(&["run", "--as-of", as_of])
    }

    /// Rows of a query as maps column → value (strings, as CSV prints them).
    pub fn records(&self, sql: &str) -> Vec<std::collections::HashMap<String, String>> {
        let out = self.query_csv(sql);
        let mut reader = csv::Reader::from_reader(out.as_bytes());
        let headers = reader.headers().unwrap().clone();
        reader
            .records()
            .map(|r| {
                headers
                    .iter()
                    .zip(r.unwrap().iter())
                    .map(|(h, v)| (h.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }

    /// One member's row of a metric table, by member_id.
    pub fn member(&self, table: &str, member: &str) -> std::collections::HashMap<String, String> {
        let rows = self.records(&format!(
            "SELECT * FROM {table} WHERE member_id = '{member}'"
        ));
        assert_eq!(rows.len(), 1, "{table} rows for {member}: {rows:?}");
        rows.into_iter().next().unwrap()
    }
}

/// Parse a float and compare within 1e-9.
pub fn approx(value: &str, expected: f64) -> bool {
    value
        .parse::<f64>()
        .map(|v| (v - expected).abs() < 1e-9)
        .unwrap_or(false)
}

impl Scratch {
    /// Every quarantine record in the lake (all days, all files), in input line order.
    pub fn quarantine(&self) -> Vec<serde_json::Value> {
        let mut out: Vec<serde_json::Value> = Vec::new();
        for file in files_below(&self.lake().join("quarantine")) {
            let text = std::fs::read_to_string(&file).unwrap();
            out.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
        }
        out.sort_by_key(|r| r["line"].as_u64());
        out
    }
}

/// Every file below `dir`.
pub fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
