//! Typed configuration (SPEC §7), parsed and validated once at load.
//!
//! Parsing is pure: [`Config::from_toml`] turns text into a validated [`Config`] or an
//! [`Error::Config`] naming the file, the dotted key and the problem. Unknown keys are errors
//! (`deny_unknown_fields` everywhere). Secrets never live here: the config names environment
//! variables (`password_env`, `secret_env`) that hold them.
//!
//! Settings that shape metrics live in [`Settings`]: `[defaults]` holds them for every
//! community and each `[[communities]]` entry may override any of them. Resolution is field by
//! field (community, then `[defaults]`, then the built-in default), and for the `points`,
//! `activity_weights` and `tiers` tables key by key, so overriding one point weight keeps the
//! others. Relative paths (`lake`, `state_dir`, sink and export paths) are taken relative to the
//! directory `pulse` runs in, like the paths given on its command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::event::EventType;

/// The reference config: every key with its default and a comment (`pulse init` writes it).
pub const EXAMPLE_CONFIG: &str = include_str!("../config/pulse.example.toml");

/// Where `pulse` looks for its config when neither `--config` nor `PULSE_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/pulse.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Lake location: a local path (default `./lake`).
    #[serde(default = "default_lake")]
    pub lake: String,
    /// Run history, sent/delivered records and the email outbox (default `./state`).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub defaults: Settings,
    #[serde(default)]
    pub communities: Vec<CommunityConfig>,
    /// Demand taxonomies (SPEC §4.6). When absent, the built-in ones of
    /// `config/pulse.example.toml` are used.
    #[serde(default)]
    pub taxonomies: Option<Vec<Taxonomy>>,
    #[serde(default)]
    pub report: ReportConfig,
    #[serde(default)]
    pub email: EmailConfig,
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    #[serde(default)]
    pub ingest: IngestConfig,
}

fn default_lake() -> String {
    "./lake".into()
}
fn default_state_dir() -> PathBuf {
    "./state".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Memory the query engine may use before it spills to disk, e.g. "2GiB", "512MiB".
    #[serde(default = "default_memory_limit")]
    pub memory_limit: ByteSize,
    /// Parallelism of query plans (default: 2).
    #[serde(default = "default_target_partitions")]
    pub target_partitions: usize,
    #[serde(default)]
    pub backend: Backend,
    /// `df://host:port` of a Ballista scheduler, for `backend = "ballista"`.
    #[serde(default)]
    pub ballista_url: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            memory_limit: default_memory_limit(),
            target_partitions: default_target_partitions(),
            backend: Backend::Local,
            ballista_url: None,
        }
    }
}

fn default_memory_limit() -> ByteSize {
    ByteSize(2 << 30)
}
fn default_target_partitions() -> usize {
    2
}

/// Lake URL schemes `Lake::open` understands.
const LAKE_SCHEMES: [&str; 8] = ["file", "s3", "s3a", "gs", "az", "azure", "abfs", "abfss"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    #[default]
    Local,
    BallistaStandalone,
    Ballista,
}

/// A byte count written as `"2GiB"`, `"512MiB"`, `"64KiB"`, `"1GB"` or a bare integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size such as \"2GiB\" or \"512MiB\""))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" | "k" => 1 << 10,
            "mib" | "m" => 1 << 20,
            "gib" | "g" => 1 << 30,
            "tib" | "t" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{s}` (use KiB, MiB, GiB)"
                ))
            }
        };
        Ok(ByteSize((value * factor as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Defines [`Settings`] (`[defaults]`: every metric setting, all optional) and
/// [`CommunityConfig`] (a `[[communities]]` entry: `id`, `name` and the same settings as
/// overrides) from one field list, so the two cannot drift apart. (serde's `flatten` would do
/// this but does not work with `deny_unknown_fields`.)
macro_rules! metric_settings {
    ($($field:ident: $ty:ty),* $(,)?) => {
        /// Metric settings: `[defaults]`, and the same keys on any `[[communities]]` entry.
        /// Every field is optional here; [`CommunitySettings`] is the resolved form.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $(pub $field: Option<$ty>,)*
        }

        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct CommunityConfig {
            pub id: String,
            #[serde(default)]
            pub name: Option<String>,
            $(pub $field: Option<$ty>,)*
        }

        impl CommunityConfig {
            /// A community's own overrides, in the same shape as `[defaults]`.
            fn settings(&self) -> Settings {
                Settings { $($field: self.$field.clone(),)* }
            }
        }
    };
}

metric_settings! {
    timezone: String,
    locale: Locale,
    window_days: u32,
    normalization: Normalization,
    top_n: u32,
    cohort_grain: CohortGrain,
    cohort_periods: u32,
    exclude_members: Vec<String>,
    active_event_types: Vec<String>,
    activity_weights: ActivityWeightsOverride,
    tiers: TiersOverride,
    points: BTreeMap<String, PointRule>,
    report_to: Vec<String>,
    taxonomies: Vec<Taxonomy>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Locale {
    #[default]
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    ZhCn,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    #[default]
    None,
    Percentile,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CohortGrain {
    #[default]
    Month,
    Week,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityWeightsOverride {
    pub participation: Option<f64>,
    pub interaction: Option<f64>,
    pub contribution: Option<f64>,
    pub retention: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiersOverride {
    pub contributor_min_contribution: Option<u32>,
    pub active_min_days: Option<u32>,
    pub at_risk_prev_min_days: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointRule {
    pub weight: f64,
    pub daily_cap: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taxonomy {
    pub name: String,
    pub categories: Vec<Category>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub name: String,
    pub keywords: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Cron with seconds, evaluated in each community's timezone.
    #[serde(default = "default_report_schedule")]
    pub schedule: String,
    #[serde(default = "default_from")]
    pub from: String,
    /// After downtime, at most this many missed report dates are run (the most recent ones),
    /// each marked late.
    #[serde(default = "default_catch_up")]
    pub catch_up: u32,
    /// A scheduled run that failed this many times is given up (later ones still run).
    #[serde(default = "default_run_attempts")]
    pub max_attempts: u32,
    /// Seconds before a failed scheduled run is tried again.
    #[serde(default = "default_retry_secs")]
    pub retry_secs: u64,
    /// A directory with edited report templates (`report.html.j2`, `report.txt.j2`,
    /// `i18n/<locale>.toml`); files missing there are the built-in ones.
    #[serde(default)]
    pub templates: Option<PathBuf>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            schedule: default_report_schedule(),
            from: default_from(),
            catch_up: default_catch_up(),
            max_attempts: default_run_attempts(),
            retry_secs: default_retry_secs(),
            templates: None,
        }
    }
}

fn default_report_schedule() -> String {
    "0 0 9 * * Mon".into()
}
fn default_catch_up() -> u32 {
    4
}
fn default_run_attempts() -> u32 {
    3
}
fn default_retry_secs() -> u64 {
    300
}
fn default_from() -> String {
    "Community Pulse <pulse@localhost>".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    #[serde(default)]
    pub transport: EmailTransport,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable holding the SMTP password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Seconds before an SMTP connection or command gives up.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
    /// Attempts per message within one run for transient failures (connection refused,
    /// timeouts, 4xx answers), with exponential backoff; a message still unsent stays queued
    /// and the next run tries again.
    #[serde(default = "default_email_attempts")]
    pub max_attempts: u32,
    /// Delay before the second attempt, doubled before each later one.
    #[serde(default = "default_email_retry_ms")]
    pub retry_initial_ms: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            transport: EmailTransport::File,
            host: None,
            port: default_smtp_port(),
            tls: SmtpTls::Starttls,
            username: None,
            password_env: None,
            timeout_secs: default_smtp_timeout(),
            max_attempts: default_email_attempts(),
            retry_initial_ms: default_email_retry_ms(),
        }
    }
}

fn default_smtp_port() -> u16 {
    587
}
fn default_smtp_timeout() -> u64 {
    30
}
fn default_email_attempts() -> u32 {
    3
}
fn default_email_retry_ms() -> u64 {
    2000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTransport {
    #[default]
    File,
    Smtp,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    File {
        path: PathBuf,
        #[serde(default = "default_sink_formats")]
        formats: Vec<SinkFormat>,
    },
    Webhook {
        url: String,
        secret_env: String,
        #[serde(default = "default_max_body")]
        max_body_bytes: ByteSize,
        #[serde(default = "default_sink_timeout")]
        timeout_secs: u64,
        #[serde(default = "default_sink_attempts")]
        max_attempts: u32,
        /// Backoff before the second attempt (doubled each time, with jitter).
        #[serde(default = "default_sink_retry_ms")]
        retry_initial_ms: u64,
        /// Longest wait between attempts; a Retry-After beyond it ends this run's attempts.
        #[serde(default = "default_sink_retry_max")]
        retry_max_secs: u64,
    },
}

fn default_sink_formats() -> Vec<SinkFormat> {
    vec![SinkFormat::Csv, SinkFormat::Json]
}
fn default_max_body() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_sink_timeout() -> u64 {
    10
}
fn default_sink_attempts() -> u32 {
    5
}
fn default_sink_retry_ms() -> u64 {
    1000
}
fn default_sink_retry_max() -> u64 {
    300
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkFormat {
    Csv,
    Json,
    Parquet,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Cron with seconds: how often the spool is moved into the lake.
    #[serde(default = "default_ingest_schedule")]
    pub schedule: String,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub exports: Vec<ExportConfig>,
    /// The variable holding the bearer token for `POST /v1/events`, good for every community
    /// (unset, and no `[[ingest.tokens]]`: that endpoint answers 401 to everyone).
    #[serde(default)]
    pub token_env: Option<String>,
    /// More bearer tokens for `POST /v1/events`, each good for the listed communities only.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Largest request body accepted (413 beyond).
    #[serde(default = "default_ingest_body")]
    pub max_body_bytes: ByteSize,
    /// Spool size beyond which requests get 503 with Retry-After until compaction catches up.
    #[serde(default = "default_spool_max")]
    pub spool_max_bytes: ByteSize,
    /// A CSV file of `alias,member_id` (e.g. `stripe:cus_123,u42`) unifying one person across
    /// platforms.
    #[serde(default)]
    pub identities: Option<PathBuf>,
    /// The same, inline: `"stripe:cus_123" = "u42"`.
    #[serde(default)]
    pub identity: BTreeMap<String, String>,
}

fn default_ingest_body() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_spool_max() -> ByteSize {
    ByteSize(1 << 30)
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            schedule: default_ingest_schedule(),
            sources: Vec::new(),
            exports: Vec::new(),
            token_env: None,
            tokens: Vec::new(),
            max_body_bytes: default_ingest_body(),
            spool_max_bytes: default_spool_max(),
            identities: None,
            identity: BTreeMap::new(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_ingest_schedule() -> String {
    "0 */15 * * * *".into()
}

/// `[[ingest.tokens]]`: a bearer token for `POST /v1/events` limited to some communities
/// (events for any other community: 403, the whole request refused).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The variable holding the token.
    pub token_env: String,
    pub communities: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
    pub community: String,
    #[serde(default)]
    pub secret_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Generic,
    Discourse,
    Stripe,
    StandardWebhooks,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    pub path: PathBuf,
    pub format: ExportFormat,
    pub community: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Ndjson,
    Csv,
    SlackExport,
    DiscordExport,
}

/// The settings of one community after resolution (community, then `[defaults]`, then
/// built-in defaults). This is what the models read.
#[derive(Debug, Clone, PartialEq)]
pub struct CommunitySettings {
    pub id: String,
    pub name: String,
    pub timezone: Tz,
    pub locale: Locale,
    pub window_days: u32,
    pub normalization: Normalization,
    pub top_n: u32,
    pub cohort_grain: CohortGrain,
    pub cohort_periods: u32,
    pub exclude_members: Vec<String>,
    pub active_event_types: Vec<EventType>,
    pub activity_weights: ActivityWeights,
    pub tiers: Tiers,
    /// Point rule per event type; types not listed earn nothing.
    pub points: BTreeMap<EventType, PointRule>,
    pub report_to: Vec<String>,
    pub taxonomies: Vec<Taxonomy>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivityWeights {
    pub participation: f64,
    pub interaction: f64,
    pub contribution: f64,
    pub retention: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiers {
    pub contributor_min_contribution: u32,
    pub active_min_days: u32,
    pub at_risk_prev_min_days: u32,
}

/// SPEC §4.2 default point rules: (type, weight, daily cap).
const DEFAULT_POINTS: &[(EventType, f64, u32)] = &[
    (EventType::Post, 10.0, 5),
    (EventType::Comment, 3.0, 20),
    (EventType::Solution, 15.0, 5),
    (EventType::Like, 1.0, 30),
    (EventType::Share, 2.0, 10),
    (EventType::Cite, 2.0, 10),
    (EventType::Checkin, 5.0, 1),
    (EventType::Attend, 10.0, 3),
];

/// The default taxonomies of SPEC §4.6: the `[[taxonomies]]` of `config/pulse.example.toml`,
/// which is compiled in so the documented defaults and the built-in ones cannot drift apart.
pub fn default_taxonomies() -> Vec<Taxonomy> {
    #[derive(Deserialize)]
    struct Shipped {
        taxonomies: Vec<Taxonomy>,
    }
    let shipped: Shipped = toml::from_str(EXAMPLE_CONFIG).expect("the example config parses");
    shipped.taxonomies
}

impl Config {
    /// Load the config named by `explicit` (`--config` / `PULSE_CONFIG`), else
    /// `config/pulse.toml` when it exists, else the built-in defaults.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>)> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from(DEFAULT_CONFIG_PATH);
                if !p.exists() {
                    return Ok((Config::default_config(), None));
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Config {
            file: path.clone(),
            key: String::new(),
            message: format!("cannot read the config file: {e}"),
        })?;
        Ok((Config::from_toml(&text, &path)?, Some(path)))
    }

    /// The configuration used when no config file exists: every key at its default.
    pub fn default_config() -> Config {
        Config::from_toml("", Path::new("<built-in defaults>")).expect("defaults are valid")
    }

    /// Parse and validate TOML text; `file` is only used to name the file in errors.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            Error::Config {
                file: file.to_path_buf(),
                key: if key == "." { String::new() } else { key },
                message: inner.message().to_string() + &line_of(text, inner.span()),
            }
        })?;
        config.validate(file)?;
        Ok(config)
    }

    fn validate(&self, file: &Path) -> Result<()> {
        let err = |key: String, message: String| Error::Config {
            file: file.to_path_buf(),
            key,
            message,
        };
        if self.lake.trim().is_empty() {
            return Err(err("lake".into(), "must not be empty".into()));
        }
        if let Some((scheme, rest)) = self.lake.split_once("://") {
            if !LAKE_SCHEMES.contains(&scheme) {
                return Err(err(
                    "lake".into(),
                    format!("unsupported scheme `{scheme}://`: use a path, file://, s3://, gs:// or az://"),
                ));
            }
            if scheme != "file" && rest.split('/').next().unwrap_or("").is_empty() {
                return Err(err(
                    "lake".into(),
                    format!(
                        "`{}` names no bucket: write {scheme}://<bucket>/<prefix>",
                        self.lake
                    ),
                ));
            }
        }
        // DataFusion 55 needs headroom: at 128MiB a 10M-event run panics inside RepartitionExec's
        // spill path ("partition not used yet"); 256MiB completes by spilling.
        if self.engine.memory_limit.0 < (256 << 20) {
            return Err(err(
                "engine.memory_limit".into(),
                "must be at least 256MiB (DataFusion needs that much headroom to spill)".into(),
            ));
        }
        if self.engine.target_partitions == 0 {
            return Err(err(
                "engine.target_partitions".into(),
                "must be at least 1".into(),
            ));
        }
        match self.engine.backend {
            Backend::Local => {}
            Backend::Ballista | Backend::BallistaStandalone if !cfg!(feature = "ballista") => {
                return Err(err(
                    "engine.backend".into(),
                    "Ballista backends are not built into this binary (build with `--features ballista`); use \"local\"".into(),
                ))
            }
            Backend::Ballista => match self.engine.ballista_url.as_deref() {
                Some(url) if url.starts_with("df://") && url.len() > 5 => {}
                Some(url) => {
                    return Err(err(
                        "engine.ballista_url".into(),
                        format!("`{url}` is not a scheduler address: write df://<host>:<port>"),
                    ))
                }
                None => {
                    return Err(err(
                        "engine.ballista_url".into(),
                        "backend = \"ballista\" needs the scheduler's address, e.g. \"df://scheduler:50050\"".into(),
                    ))
                }
            },
            Backend::BallistaStandalone => {}
        }
        check_settings(&self.defaults, "defaults", &err)?;
        if let Some(t) = &self.taxonomies {
            check_taxonomies(t, "taxonomies", &err)?;
        }
        let mut ids = std::collections::HashSet::new();
        for (i, c) in self.communities.iter().enumerate() {
            let at = format!("communities[{i}]");
            if let Err(reason) = crate::event::check_community_id(&c.id) {
                return Err(err(format!("{at}.id"), reason));
            }
            if !ids.insert(c.id.as_str()) {
                return Err(err(
                    format!("{at}.id"),
                    format!("community `{}` is configured twice", c.id),
                ));
            }
            check_settings(&c.settings(), &at, &err)?;
        }
        for (key, schedule) in [
            ("report.schedule", &self.report.schedule),
            ("ingest.schedule", &self.ingest.schedule),
        ] {
            if let Err(e) = schedule.parse::<cron::Schedule>() {
                return Err(err(
                    key.into(),
                    format!("`{schedule}` is not a cron expression with seconds (e.g. \"0 0 9 * * Mon\"): {e}"),
                ));
            }
        }
        if !looks_like_mailbox(&self.report.from) {
            return Err(err(
                "report.from".into(),
                format!("`{}` is not an email address", self.report.from),
            ));
        }
        if self.email.transport == EmailTransport::Smtp
            && self.email.host.as_deref().unwrap_or("").is_empty()
        {
            return Err(err(
                "email.host".into(),
                "is required when email.transport = \"smtp\"".into(),
            ));
        }
        check_env_name(
            self.email.password_env.as_deref(),
            "email.password_env",
            &err,
        )?;
        for (key, value) in [
            ("report.catch_up", self.report.catch_up),
            ("report.max_attempts", self.report.max_attempts),
        ] {
            if value == 0 {
                return Err(err(key.into(), "must be at least 1".into()));
            }
        }
        if self.email.max_attempts == 0 {
            return Err(err(
                "email.max_attempts".into(),
                "must be at least 1".into(),
            ));
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            if let SinkConfig::Webhook {
                url,
                secret_env,
                max_attempts,
                max_body_bytes,
                ..
            } = sink
            {
                if *max_attempts == 0 {
                    return Err(err(
                        format!("sinks[{i}].max_attempts"),
                        "must be at least 1".into(),
                    ));
                }
                if max_body_bytes.0 < 4096 {
                    return Err(err(
                        format!("sinks[{i}].max_body_bytes"),
                        "must be at least 4KiB (one page holds the envelope and one member at least)".into(),
                    ));
                }
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(err(
                        format!("sinks[{i}].url"),
                        format!("`{url}` is not an http(s) URL"),
                    ));
                }
                check_env_name(Some(secret_env), &format!("sinks[{i}].secret_env"), &err)?;
            }
            if let SinkConfig::File { formats, .. } = sink {
                if formats.is_empty() {
                    return Err(err(
                        format!("sinks[{i}].formats"),
                        "must list at least one format".into(),
                    ));
                }
            }
        }
        if self.ingest.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(err(
                "ingest.listen".into(),
                format!(
                    "`{}` is not an address such as \"127.0.0.1:8080\"",
                    self.ingest.listen
                ),
            ));
        }
        check_env_name(self.ingest.token_env.as_deref(), "ingest.token_env", &err)?;
        let mut token_envs: std::collections::HashSet<&str> =
            self.ingest.token_env.as_deref().into_iter().collect();
        for (i, t) in self.ingest.tokens.iter().enumerate() {
            let key = format!("ingest.tokens[{i}].token_env");
            check_env_name(Some(&t.token_env), &key, &err)?;
            if !token_envs.insert(t.token_env.as_str()) {
                return Err(err(
                    key,
                    format!(
                        "`{}` is already the variable of another token (ingest.token_env or ingest.tokens)",
                        t.token_env
                    ),
                ));
            }
            if t.communities.is_empty() {
                return Err(err(
                    format!("ingest.tokens[{i}].communities"),
                    "must list at least one community (a token for every community is ingest.token_env)".into(),
                ));
            }
            for (j, c) in t.communities.iter().enumerate() {
                if let Err(reason) = crate::event::check_community_id(c) {
                    return Err(err(format!("ingest.tokens[{i}].communities[{j}]"), reason));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.ingest.sources.iter().enumerate() {
            if s.secret_env.is_none() {
                return Err(err(
                    format!("ingest.sources[{i}].secret_env"),
                    "is required: every webhook source is verified with its secret".into(),
                ));
            }
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(err(
                    format!("ingest.sources[{i}].name"),
                    "must be letters, digits, `_` or `-`".into(),
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(err(
                    format!("ingest.sources[{i}].name"),
                    format!("source `{}` is configured twice", s.name),
                ));
            }
            check_env_name(
                s.secret_env.as_deref(),
                &format!("ingest.sources[{i}].secret_env"),
                &err,
            )?;
            if let Err(reason) = crate::event::check_community_id(&s.community) {
                return Err(err(format!("ingest.sources[{i}].community"), reason));
            }
        }
        for (i, x) in self.ingest.exports.iter().enumerate() {
            if let Err(reason) = crate::event::check_community_id(&x.community) {
                return Err(err(format!("ingest.exports[{i}].community"), reason));
            }
        }
        Ok(())
    }

    /// The resolved settings of every configured community, in config order.
    pub fn communities(&self) -> Vec<CommunitySettings> {
        self.communities
            .iter()
            .map(|c| self.resolve(&c.id, c.name.clone(), &c.settings()))
            .collect()
    }

    /// Settings for `id`: its `[[communities]]` entry if configured, else `[defaults]` alone
    /// (communities found in the lake but not configured run on the defaults).
    pub fn community(&self, id: &str) -> CommunitySettings {
        match self.communities.iter().find(|c| c.id == id) {
            Some(c) => self.resolve(&c.id, c.name.clone(), &c.settings()),
            None => self.resolve(id, None, &Settings::default()),
        }
    }

    fn resolve(&self, id: &str, name: Option<String>, own: &Settings) -> CommunitySettings {
        let d = &self.defaults;
        let aw = |f: fn(&ActivityWeightsOverride) -> Option<f64>, builtin: f64| {
            own.activity_weights
                .as_ref()
                .and_then(f)
                .or_else(|| d.activity_weights.as_ref().and_then(f))
                .unwrap_or(builtin)
        };
        let tier = |f: fn(&TiersOverride) -> Option<u32>, builtin: u32| {
            own.tiers
                .as_ref()
                .and_then(f)
                .or_else(|| d.tiers.as_ref().and_then(f))
                .unwrap_or(builtin)
        };
        let mut points: BTreeMap<EventType, PointRule> = DEFAULT_POINTS
            .iter()
            .map(|&(t, weight, daily_cap)| (t, PointRule { weight, daily_cap }))
            .collect();
        for layer in [&d.points, &own.points].into_iter().flatten() {
            for (name, rule) in layer {
                // Names were checked in `validate`.
                if let Ok(t) = name.parse::<EventType>() {
                    points.insert(t, *rule);
                }
            }
        }
        let timezone = own
            .timezone
            .as_ref()
            .or(d.timezone.as_ref())
            .and_then(|t| t.parse::<Tz>().ok())
            .unwrap_or(Tz::UTC);
        let active_event_types = own
            .active_event_types
            .as_ref()
            .or(d.active_event_types.as_ref())
            .map(|v| v.iter().filter_map(|t| t.parse().ok()).collect())
            .unwrap_or_else(|| EventType::DEFAULT_ACTIVE.to_vec());
        CommunitySettings {
            id: id.to_string(),
            name: name.unwrap_or_else(|| id.to_string()),
            timezone,
            locale: own.locale.or(d.locale).unwrap_or_default(),
            window_days: own.window_days.or(d.window_days).unwrap_or(30),
            normalization: own.normalization.or(d.normalization).unwrap_or_default(),
            top_n: own.top_n.or(d.top_n).unwrap_or(100),
            cohort_grain: own.cohort_grain.or(d.cohort_grain).unwrap_or_default(),
            cohort_periods: own.cohort_periods.or(d.cohort_periods).unwrap_or(12),
            exclude_members: own
                .exclude_members
                .clone()
                .or_else(|| d.exclude_members.clone())
                .unwrap_or_default(),
            active_event_types,
            activity_weights: ActivityWeights {
                participation: aw(|w| w.participation, 0.5),
                interaction: aw(|w| w.interaction, 0.3),
                contribution: aw(|w| w.contribution, 0.1),
                retention: aw(|w| w.retention, 0.1),
            },
            tiers: Tiers {
                contributor_min_contribution: tier(|t| t.contributor_min_contribution, 10),
                active_min_days: tier(|t| t.active_min_days, 8),
                at_risk_prev_min_days: tier(|t| t.at_risk_prev_min_days, 8),
            },
            points,
            report_to: own
                .report_to
                .clone()
                .or_else(|| d.report_to.clone())
                .unwrap_or_default(),
            taxonomies: own
                .taxonomies
                .clone()
                .or_else(|| d.taxonomies.clone())
                .or_else(|| self.taxonomies.clone())
                .unwrap_or_else(default_taxonomies),
        }
    }
}

/// " (line N)" for a TOML span, so errors point into the file.
fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) if r.start <= text.len() => {
            format!(" (line {})", text[..r.start].matches('\n').count() + 1)
        }
        _ => String::new(),
    }
}

fn check_settings(s: &Settings, at: &str, err: &impl Fn(String, String) -> Error) -> Result<()> {
    if let Some(tz) = &s.timezone {
        if tz.parse::<Tz>().is_err() {
            return Err(err(
                format!("{at}.timezone"),
                format!("`{tz}` is not an IANA timezone name such as \"Asia/Shanghai\" or \"UTC\""),
            ));
        }
    }
    let at_least_one = [
        ("window_days", s.window_days),
        ("top_n", s.top_n),
        ("cohort_periods", s.cohort_periods),
    ];
    for (key, value) in at_least_one {
        if value == Some(0) {
            return Err(err(format!("{at}.{key}"), "must be at least 1".into()));
        }
    }
    if let Some(w) = s.window_days {
        if w > 3660 {
            return Err(err(
                format!("{at}.window_days"),
                format!("{w} days is more than ten years"),
            ));
        }
    }
    if let Some(types) = &s.active_event_types {
        for (i, t) in types.iter().enumerate() {
            if t.parse::<EventType>().is_err() {
                return Err(err(
                    format!("{at}.active_event_types[{i}]"),
                    format!("`{t}` is not an event type"),
                ));
            }
        }
    }
    if let Some(w) = &s.activity_weights {
        for (key, v) in [
            ("participation", w.participation),
            ("interaction", w.interaction),
            ("contribution", w.contribution),
            ("retention", w.retention),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    return Err(err(
                        format!("{at}.activity_weights.{key}"),
                        format!("must be a number ≥ 0 (got {v})"),
                    ));
                }
            }
        }
    }
    if let Some(points) = &s.points {
        for (name, rule) in points {
            if name.parse::<EventType>().is_err() {
                return Err(err(
                    format!("{at}.points.{name}"),
                    format!("`{name}` is not an event type"),
                ));
            }
            if !rule.weight.is_finite() || rule.weight < 0.0 {
                return Err(err(
                    format!("{at}.points.{name}.weight"),
                    "must be a number ≥ 0".into(),
                ));
            }
        }
    }
    if let Some(to) = &s.report_to {
        for (i, addr) in to.iter().enumerate() {
            if !looks_like_mailbox(addr) {
                return Err(err(
                    format!("{at}.report_to[{i}]"),
                    format!("`{addr}` is not an email address"),
                ));
            }
        }
    }
    if let Some(t) = &s.taxonomies {
        check_taxonomies(t, &format!("{at}.taxonomies"), err)?;
    }
    Ok(())
}

fn check_taxonomies(
    taxonomies: &[Taxonomy],
    at: &str,
    err: &impl Fn(String, String) -> Error,
) -> Result<()> {
    let mut names = std::collections::HashSet::new();
    for (i, t) in taxonomies.iter().enumerate() {
        if t.name.trim().is_empty() {
            return Err(err(format!("{at}[{i}].name"), "must not be empty".into()));
        }
        if !names.insert(t.name.as_str()) {
            return Err(err(
                format!("{at}[{i}].name"),
                format!("taxonomy `{}` is defined twice", t.name),
            ));
        }
        let mut cats = std::collections::HashSet::new();
        for (j, c) in t.categories.iter().enumerate() {
            let key = format!("{at}[{i}].categories[{j}]");
            if c.name.trim().is_empty() || c.name == "uncategorized" {
                return Err(err(
                    format!("{key}.name"),
                    "must be non-empty and not `uncategorized`".into(),
                ));
            }
            if !cats.insert(c.name.as_str()) {
                return Err(err(
                    format!("{key}.name"),
                    format!("category `{}` appears twice", c.name),
                ));
            }
            if c.keywords.is_empty() || c.keywords.iter().any(|k| k.trim().is_empty()) {
                return Err(err(
                    format!("{key}.keywords"),
                    "must list at least one non-empty keyword".into(),
                ));
            }
        }
    }
    Ok(())
}

fn check_env_name(
    name: Option<&str>,
    key: &str,
    err: &impl Fn(String, String) -> Error,
) -> Result<()> {
    match name {
        Some(n) if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => Err(err(
            key.into(),
            format!("`{n}` is not an environment variable name; put the secret in an environment variable and name it here"),
        )),
        _ => Ok(()),
    }
}

/// `name@domain` or `Display Name <name@domain>`.
/// An address the mailer will accept: `a@b.c` or `Name <a@b.c>` (RFC 5322, as lettre parses it).
fn looks_like_mailbox(s: &str) -> bool {
    s.parse::<lettre::message::Mailbox>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::from_toml(text, Path::new("pulse.toml"))
    }

    #[test]
    fn empty_config_is_all_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.lake, "./lake");
        assert_eq!(c.engine.memory_limit, ByteSize(2 << 30));
        let s = c.community("x");
        assert_eq!(s.window_days, 30);
        assert_eq!(
            s.points[&EventType::Checkin],
            PointRule {
                weight: 5.0,
                daily_cap: 1
            }
        );
        assert_eq!(s.taxonomies.len(), 2);
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = parse("[defaults]\nwindow_dayz = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pulse.toml: key `defaults"), "{e}");
        assert!(e.contains("unknown field `window_dayz`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn wrong_type_names_key() {
        let e = parse("[engine]\ntarget_partitions = \"two\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `engine.target_partitions`"), "{e}");
    }

    #[test]
    fn bad_values_name_key_and_problem() {
        let cases = [
            (
                "[defaults]\ntimezone = \"Mars/Olympus\"\n",
                "defaults.timezone",
                "IANA",
            ),
            (
                "[[communities]]\nid = \"a\"\nwindow_days = 0\n",
                "communities[0].window_days",
                "at least 1",
            ),
            (
                "[report]\nschedule = \"every monday\"\n",
                "report.schedule",
                "cron",
            ),
            (
                "[engine]\nmemory_limit = \"lots\"\n",
                "engine.memory_limit",
                "size",
            ),
            (
                "[defaults.points]\nhug = { weight = 1, daily_cap = 1 }\n",
                "defaults.points.hug",
                "not an event type",
            ),
            (
                "[email]\npassword_env = \"hunter2 secret\"\n",
                "email.password_env",
                "environment variable",
            ),
            (
                "[[communities]]\nid = \"a\"\n[[communities]]\nid = \"a\"\n",
                "communities[1].id",
                "twice",
            ),
            (
                "[[communities]]\nid = \"a/b\"\n",
                "communities[0].id",
                "letters",
            ),
            (
                "[[ingest.tokens]]\ntoken_env = \"T_A\"\ncommunities = []\n",
                "ingest.tokens[0].communities",
                "at least one community",
            ),
            (
                "[[ingest.tokens]]\ntoken_env = \"T_A\"\ncommunities = [\"a\", \"../b\"]\n",
                "ingest.tokens[0].communities[1]",
                "letters",
            ),
            (
                "[ingest]\ntoken_env = \"T_A\"\n[[ingest.tokens]]\ntoken_env = \"T_A\"\ncommunities = [\"a\"]\n",
                "ingest.tokens[0].token_env",
                "already the variable of another token",
            ),
            (
                "[[ingest.tokens]]\ntoken_env = \"my token\"\ncommunities = [\"a\"]\n",
                "ingest.tokens[0].token_env",
                "environment variable",
            ),
            ("lake = \"ftp://host/lake\"\n", "lake", "unsupported scheme"),
            ("lake = \"s3:///prefix\"\n", "lake", "names no bucket"),
            (
                "[engine]\nbackend = \"ballista\"\nballista_url = \"http://x:50050\"\n",
                if cfg!(feature = "ballista") {
                    "engine.ballista_url"
                } else {
                    "engine.backend"
                },
                if cfg!(feature = "ballista") {
                    "df://<host>:<port>"
                } else {
                    "--features ballista"
                },
            ),
        ];
        for (text, key, problem) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(&format!("key `{key}`")), "{text:?} gave {e}");
            assert!(e.contains(problem), "{text:?} gave {e}");
        }
    }

    #[test]
    fn community_overrides_merge_key_by_key() {
        let c = parse(
            r#"
            [defaults]
            timezone = "Asia/Shanghai"
            points = { post = { weight = 20, daily_cap = 2 } }
            activity_weights = { participation = 0.7 }
            [[communities]]
            id = "c1"
            window_days = 7
            activity_weights = { retention = 0.4 }
            "#,
        )
        .unwrap();
        let s = c.community("c1");
        assert_eq!(s.timezone, chrono_tz::Asia::Shanghai);
        assert_eq!(s.window_days, 7);
        assert_eq!(
            s.points[&EventType::Post],
            PointRule {
                weight: 20.0,
                daily_cap: 2
            }
        );
        assert_eq!(
            s.points[&EventType::Comment],
            PointRule {
                weight: 3.0,
                daily_cap: 20
            }
        );
        assert_eq!(s.activity_weights.participation, 0.7);
        assert_eq!(s.activity_weights.interaction, 0.3);
        assert_eq!(s.activity_weights.retention, 0.4);
    }

    #[test]
    fn memory_limit_has_a_floor() {
        let e = parse("[engine]\nmemory_limit = \"128MiB\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key `engine.memory_limit`: must be at least 256MiB"),
            "{e}"
        );
        assert!(parse("[engine]\nmemory_limit = \"256MiB\"\n").is_ok());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!("2GiB".parse::<ByteSize>().unwrap(), ByteSize(2 << 30));
        assert_eq!("512 MiB".parse::<ByteSize>().unwrap(), ByteSize(512 << 20));
        assert_eq!("1.5GiB".parse::<ByteSize>().unwrap(), ByteSize(3 << 29));
        assert!("2 parsecs".parse::<ByteSize>().is_err());
    }

    #[test]
    fn example_config_is_valid_and_matches_builtin_defaults() {
        let text = EXAMPLE_CONFIG;
        let c = parse(text).unwrap();
        assert!(default_taxonomies().iter().all(|t| t.categories.len() == 3));
        let builtin = Config::default_config().community("python-camp");
        let mut example = c.community("python-camp");
        // The example configures a community; its resolved metric settings must be the defaults.
        example.name = builtin.name.clone();
        example.timezone = builtin.timezone;
        example.locale = builtin.locale;
        example.report_to = builtin.report_to.clone();
        assert_eq!(example, builtin);
    }
}
