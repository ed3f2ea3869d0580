//! Typed configuration (SPEC §7), parsed and validated once at load.
//!
//! Parsing is pure: [`Config::from_toml`] turns text into a validated [`Config`] or an
//! [`Error::Config`] naming the file, the dotted key and the problem. Values are validated into
//! their types as they are read (serde `try_from` newtypes: [`LakeLocation`], [`Cron`] with its
//! parsed `cron::Schedule`, [`Timezone`] holding a `chrono_tz::Tz`, `SocketAddr`), so nothing
//! later re-parses a string or falls back silently; what spans several keys is checked once
//! after, in `validate`. Each component owns its section: [`engine`], [`metrics`] (`[defaults]`
//! and `[[communities]]`), [`report`] (`[report]`, `[email]`), [`sinks`], [`ingest`]. The
//! defaults are code; `config/pulse.example.toml` documents them, and a test holds the two equal. Unknown keys are errors
//! (`deny_unknown_fields` everywhere). Secrets never live here: the config names environment
//! variables (`password_env`, `secret_env`) that hold them.
//!
//! Settings that shape metrics live in [`Settings`]: `[defaults]` holds them for every
//! community and each `[[communities]]` entry may override any of them. Resolution is field by
//! field (community, then `[defaults]`, then the built-in default), and for the `points`,
//! `activity_weights` and `tiers` tables key by key, so overriding one point weight keeps the
//! others. Relative paths (`lake`, `state_dir`, sink and export paths) are taken relative to the
//! directory `pulse` runs in, like the paths given on its command line.

use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::Deserialize;

use crate::error::{Error, Result};

mod byte_size;
pub mod compaction;
pub mod engine;
pub mod ingest;
pub mod metrics;
pub mod privacy;
pub mod report;
pub mod sinks;

pub use byte_size::ByteSize;
pub use compaction::*;
pub use engine::*;
pub use ingest::*;
pub use metrics::*;
pub use privacy::*;
pub use report::*;
pub use sinks::*;

/// The reference config: every key with its default and a comment (`pulse init` writes it).
pub const EXAMPLE_CONFIG: &str = include_str!("../../config/pulse.example.toml");

/// Where `pulse` looks for its config when neither `--config` nor `PULSE_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/pulse.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Lake location: a local path (default `./lake`) or an object-store URL.
    #[serde(default = "default_lake")]
    pub lake: LakeLocation,
    /// Run history, sent/delivered records and the email outbox (default `./state`).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The umask of the process: files and directories pulse creates are its owner's only
    /// unless this lets more through (`"0027"`: the group reads).
    #[serde(default)]
    pub umask: Umask,
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
    #[serde(default)]
    pub privacy: PrivacyConfig,
    #[serde(default)]
    pub compaction: CompactionConfig,
}

fn default_lake() -> LakeLocation {
    LakeLocation("./lake".into())
}
fn default_state_dir() -> PathBuf {
    "./state".into()
}

/// Lake URL schemes `Lake::open` understands.
const LAKE_SCHEMES: [&str; 8] = ["file", "s3", "s3a", "gs", "az", "azure", "abfs", "abfss"];

/// Where the lake is: a local path, or an object-store URL (`s3://bucket/prefix`, `gs://…`,
/// `az://…`, `file://…`) whose scheme is one pulse knows and that names a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct LakeLocation(String);

impl LakeLocation {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LakeLocation {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<Self, String> {
        if text.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if let Some((scheme, rest)) = text.split_once("://") {
            if !LAKE_SCHEMES.contains(&scheme) {
                return Err(format!(
                    "unsupported scheme `{scheme}://`: use a path, file://, s3://, gs:// or az://"
                ));
            }
            if scheme != "file" && rest.split('/').next().unwrap_or("").is_empty() {
                return Err(format!(
                    "`{text}` names no bucket: write {scheme}://<bucket>/<prefix>"
                ));
            }
        }
        Ok(LakeLocation(text))
    }
}

impl std::fmt::Display for LakeLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A umask written in octal (`"0077"`, `"027"`), at most `0777`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Umask(pub u32);

impl Default for Umask {
    fn default() -> Self {
        Umask(0o077)
    }
}

impl TryFrom<String> for Umask {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<Self, String> {
        match u32::from_str_radix(text.trim(), 8) {
            Ok(mask) if mask <= 0o777 && !text.trim().is_empty() => Ok(Umask(mask)),
            _ => Err(format!(
                "`{text}` is not an octal umask such as \"0077\" (owner only) or \"0027\""
            )),
        }
    }
}

impl Umask {
    /// Make this the process's umask (Unix; elsewhere nothing).
    pub fn apply(self) {
        #[cfg(unix)]
        {
            // SAFETY: umask only sets the process's file-mode creation mask; it cannot fail.
            unsafe {
                libc::umask(self.0 as libc::mode_t);
            }
        }
    }
}

/// A cron expression with seconds first (`"0 0 9 * * Mon"`), parsed once at load.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Cron {
    text: String,
    schedule: cron::Schedule,
}

impl Cron {
    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn schedule(&self) -> &cron::Schedule {
        &self.schedule
    }
}

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        self.text == other.text
    }
}

impl TryFrom<String> for Cron {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<Self, String> {
        let schedule = text.parse::<cron::Schedule>().map_err(|e| {
            format!("`{text}` is not a cron expression with seconds (e.g. \"0 0 9 * * Mon\"): {e}")
        })?;
        Ok(Cron { text, schedule })
    }
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// An IANA timezone name (`"Asia/Shanghai"`, `"UTC"`), parsed once at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Timezone(pub Tz);

impl TryFrom<String> for Timezone {
    type Error = String;
    fn try_from(name: String) -> std::result::Result<Self, String> {
        name.parse::<Tz>().map(Timezone).map_err(|_| {
            format!("`{name}` is not an IANA timezone name such as \"Asia/Shanghai\" or \"UTC\"")
        })
    }
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
            let mut span = inner.span();
            // Some errors come without the key's full path: a number too large for TOML has
            // none, and fields of a tagged table (`[[sinks]]`) only name the table. Name the
            // key the span points at, or the one line holding the value the message quotes.
            if let Some(at) = quoted_integer(inner.message()).and_then(|n| value_at(text, n)) {
                if key_at(text, Some(at..at)).is_some_and(|k| key == "." || k.starts_with(&key)) {
                    span = Some(at..at);
                }
            }
            let key = match key_at(text, span.clone()) {
                Some(k) if key == "." || k.starts_with(&key) => k,
                _ if key == "." => String::new(),
                _ => key,
            };
            Error::Config {
                file: file.to_path_buf(),
                key,
                message: inner.message().to_string() + &line_of(text, span),
            }
        })?;
        config.validate(file)?;
        Ok(config)
    }

    /// Check that the files and folders the config names exist (`report.templates`,
    /// `email.ca_file` (and that it holds certificates), `ingest.identities`,
    /// `ingest.exports[i].path`; relative paths from the current
    /// directory). Only `pulse check-config` asks: at run time a missing export folder is a
    /// warning (it may appear later) and the others fail where they are read.
    pub fn check_paths(&self, file: &Path) -> Result<()> {
        let err = |key: String, message: String| Error::Config {
            file: file.to_path_buf(),
            key,
            message,
        };
        let dir = |key: String, path: &Path| match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(err(key, format!("{} is not a directory", path.display()))),
            Err(e) => Err(err(key, format!("{}: {e}", path.display()))),
        };
        if let Some(t) = &self.report.templates {
            dir("report.templates".into(), t)?;
        }
        if let Some(path) = &self.email.ca_file {
            crate::report::email::read_ca_file(path)
                .map_err(|message| err("email.ca_file".into(), message))?;
        }
        if let Some(p) = &self.ingest.identities {
            match std::fs::File::open(p).and_then(|f| f.metadata()) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    return Err(err(
                        "ingest.identities".into(),
                        format!("{} is not a file", p.display()),
                    ))
                }
                Err(e) => {
                    return Err(err(
                        "ingest.identities".into(),
                        format!("{}: {e}", p.display()),
                    ))
                }
            }
        }
        for (i, x) in self.ingest.exports.iter().enumerate() {
            dir(format!("ingest.exports[{i}].path"), &x.path)?;
            if let Some(m) = &x.mapping {
                // The mapping is validated as a whole (personal columns refused) where it is.
                crate::ingest::table::Mapping::load(m)?;
            }
        }
        Ok(())
    }

    fn validate(&self, file: &Path) -> Result<()> {
        let err = |key: String, message: String| Error::Config {
            file: file.to_path_buf(),
            key,
            message,
        };
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
        if self.email.transport == EmailTransport::Smtp
            && self.email.tls == SmtpTls::None
            && self.email.username.is_some()
            && !self.email.allow_plaintext_auth
        {
            return Err(err(
                "email.username".into(),
                "is set with tls = \"none\": the SMTP password would cross the network unencrypted; \
                 use tls = \"starttls\" or \"tls\", or set allow_plaintext_auth = true for a relay on a trusted network"
                    .into(),
            ));
        }
        for (key, value) in [
            ("report.catch_up", self.report.catch_up),
            ("report.max_attempts", self.report.max_attempts),
        ] {
            if value == 0 {
                return Err(err(key.into(), "must be at least 1".into()));
            }
        }
        for (key, value) in [
            (
                "ingest.header_timeout_secs",
                self.ingest.header_timeout_secs,
            ),
            (
                "ingest.request_timeout_secs",
                self.ingest.request_timeout_secs,
            ),
            ("ingest.max_connections", self.ingest.max_connections as u64),
            (
                "ingest.export_max_entry_bytes",
                self.ingest.export_max_entry_bytes.0,
            ),
            (
                "ingest.export_max_total_bytes",
                self.ingest.export_max_total_bytes.0,
            ),
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
                        format!("`{}` is not an http(s) URL", crate::sinks::redact_url(url)),
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
            let given = [
                ("secret_env", s.secret_env.as_deref()),
                ("token_env", s.token_env.as_deref()),
                ("aes_key_env", s.aes_key_env.as_deref()),
                ("receive_id", s.receive_id.as_deref()),
                (
                    "verification_token_env",
                    s.verification_token_env.as_deref(),
                ),
                ("encrypt_key_env", s.encrypt_key_env.as_deref()),
            ];
            let sets = s.kind.key_sets();
            let takes = sets
                .iter()
                .map(|set| set.join(", "))
                .collect::<Vec<_>>()
                .join("; or ");
            let value_of = |key: &str| given.iter().find(|(k, _)| *k == key).and_then(|(_, v)| *v);
            for (key, value) in given {
                let key_path = format!("ingest.sources[{i}].{key}");
                let Some(v) = value else { continue };
                if !sets.iter().any(|set| set.contains(&key)) {
                    return Err(err(
                        key_path,
                        format!(
                            "does not apply to kind `{}` (it takes {takes})",
                            s.kind.name()
                        ),
                    ));
                }
                if key.ends_with("_env") {
                    check_env_name(Some(v), &key_path, &err)?
                } else if v.is_empty() {
                    return Err(err(key_path, "may not be empty".into()));
                }
            }
            let mut whole = 0;
            for set in sets {
                let missing = set.iter().find(|k| value_of(k).is_none());
                match missing {
                    None => whole += 1,
                    Some(key) if set.iter().any(|k| value_of(k).is_some()) || sets.len() == 1 => {
                        return Err(err(
                            format!("ingest.sources[{i}].{key}"),
                            format!(
                                "is required for kind `{}` (with {}): every webhook source is verified with its secrets",
                                s.kind.name(),
                                set.join(", ")
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
            if whole == 0 {
                return Err(err(
                    format!("ingest.sources[{i}]"),
                    format!(
                        "kind `{}` needs {takes}: every webhook source is verified with its secrets",
                        s.kind.name()
                    ),
                ));
            }
            // A key the server will refuse anyway is named now, with its file and key.
            if let Some(var) = s.aes_key_env.as_deref() {
                if let Ok(value) = std::env::var(var) {
                    if let Err(problem) = crate::ingest::wecom::aes_key(&value) {
                        return Err(err(
                            format!("ingest.sources[{i}].aes_key_env"),
                            format!("the variable `{var}` {problem}"),
                        ));
                    }
                }
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
            if let Err(reason) = crate::event::check_community_id(&s.community) {
                return Err(err(format!("ingest.sources[{i}].community"), reason));
            }
        }
        for (i, x) in self.ingest.exports.iter().enumerate() {
            if let Err(reason) = crate::event::check_community_id(&x.community) {
                return Err(err(format!("ingest.exports[{i}].community"), reason));
            }
            match (x.format, &x.mapping) {
                (ExportFormat::Table, None) => {
                    return Err(err(
                        format!("ingest.exports[{i}].mapping"),
                        "format = \"table\" needs mapping = \"path/to/MAPPING.toml\"".into(),
                    ))
                }
                (ExportFormat::Table, Some(_)) | (_, None) => {}
                (_, Some(_)) => {
                    return Err(err(
                        format!("ingest.exports[{i}].mapping"),
                        "a mapping applies to format = \"table\" only".into(),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The dotted key (`defaults.window_days`, `communities[1].top_n`) of the `key = value` line
/// the span starts on, from that line and the table header above it. Keys of inline tables
/// are named by their line's key.
fn key_at(text: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    let start = span?.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let mut table: Option<String> = None;
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for l in text[..line_start].lines() {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split_once("]]")) {
            let name = name.0.trim();
            let n = counts.entry(name).or_insert(0);
            table = Some(format!("{name}[{n}]"));
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split_once(']')) {
            let name = name.0.trim();
            // A sub-table of the latest array entry (`[ingest.exports.x]`) is not tracked.
            table = Some(name.to_string());
        }
    }
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

/// The integer a serde message quotes (`invalid value: integer `-5`, expected u64`).
fn quoted_integer(message: &str) -> Option<&str> {
    let rest = message.split_once("integer `")?.1;
    Some(&rest[..rest.find('`')?])
}

/// Where `value` is, when exactly one `key = value` line of `text` has it.
fn value_at(text: &str, value: &str) -> Option<usize> {
    let mut found = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some((_, v)) = line.split_once('=') {
            let v = v.split('#').next().unwrap_or("").trim();
            if v == value {
                if found.is_some() {
                    return None;
                }
                found = Some(offset + line.find('=').unwrap_or(0) + 1);
            }
        }
        offset += line.len();
    }
    found
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
pub(crate) fn looks_like_mailbox(s: &str) -> bool {
    s.parse::<lettre::message::Mailbox>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;

    fn parse(text: &str) -> Result<Config> {
        Config::from_toml(text, Path::new("pulse.toml"))
    }

    #[test]
    fn platform_sources_need_their_keys_named_with_file_and_key() {
        let source = |kind: &str, keys: &str| {
            parse(&format!(
                "[[ingest.sources]]\nname = \"p\"\nkind = \"{kind}\"\ncommunity = \"c1\"\n{keys}"
            ))
        };
        let message = |r: Result<Config>| r.unwrap_err().to_string();
        assert!(source("slack", "secret_env = \"S\"\n").is_ok());
        let e = message(source("slack", ""));
        assert!(
            e.contains("pulse.toml") && e.contains("ingest.sources[0].secret_env"),
            "{e}"
        );
        let wecom = "token_env = \"PULSE_TEST_WC_TOKEN\"\naes_key_env = \"PULSE_TEST_WC_KEY_UNSET\"\nreceive_id = \"ww1\"\n";
        assert!(source("wecom", wecom).is_ok());
        let e = message(source("wecom", "token_env = \"T\"\nreceive_id = \"ww1\"\n"));
        assert!(
            e.contains("ingest.sources[0].aes_key_env") && e.contains("required"),
            "{e}"
        );
        let e = message(source("wecom", &format!("{wecom}secret_env = \"S\"\n")));
        assert!(
            e.contains("ingest.sources[0].secret_env") && e.contains("does not apply"),
            "{e}"
        );
        let e = message(source(
            "wecom",
            &wecom.replace("PULSE_TEST_WC_TOKEN", "not a name"),
        ));
        assert!(e.contains("ingest.sources[0].token_env"), "{e}");
        // DingTalk: the robot's secret, the subscription's three keys, or both; never a part.
        assert!(source("dingtalk", "secret_env = \"S\"\n").is_ok());
        assert!(source("dingtalk", wecom).is_ok());
        assert!(source("dingtalk", &format!("{wecom}secret_env = \"S\"\n")).is_ok());
        let e = message(source(
            "dingtalk",
            "secret_env = \"S\"\ntoken_env = \"T\"\n",
        ));
        assert!(
            e.contains("ingest.sources[0].aes_key_env") && e.contains("required"),
            "{e}"
        );
        let e = message(source("dingtalk", ""));
        assert!(
            e.contains("ingest.sources[0]") && e.contains("secret_env; or token_env"),
            "{e}"
        );
        // A key of the wrong length in the variable: named at load, with file, key and problem.
        std::env::set_var("PULSE_TEST_WC_KEY_SHORT", "abc");
        let e = message(source("wecom", &wecom.replace("_UNSET", "_SHORT")));
        assert!(
            e.contains("pulse.toml")
                && e.contains("ingest.sources[0].aes_key_env")
                && e.contains("PULSE_TEST_WC_KEY_SHORT")
                && e.contains("43"),
            "{e}"
        );
    }

    #[test]
    fn empty_config_is_all_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.lake.as_str(), "./lake");
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
    fn membership_overrides_key_by_key_and_product_terms_replace() {
        let c = parse(
            "[defaults]\nmembership = { grace_days = 3, product_terms = { \"monthly\" = 30, \"week\" = 7 } }\n\
             [[communities]]\nid = \"a\"\nmembership = { term_days = 90, product_terms = { \"year\" = 365 } }\n\
             [[communities]]\nid = \"b\"\n",
        )
        .unwrap();
        let a = c.community("a").membership;
        assert_eq!((a.term_days, a.grace_days, a.horizon_days), (90, 3, 30));
        assert_eq!(
            a.product_terms.into_iter().collect::<Vec<_>>(),
            [("year".to_string(), 365)]
        );
        let b = c.community("b").membership;
        assert_eq!((b.term_days, b.grace_days), (365, 3));
        assert_eq!(b.product_terms.len(), 2);
        let builtin = parse("").unwrap().community("x").membership;
        assert_eq!(
            (builtin.term_days, builtin.grace_days, builtin.horizon_days),
            (365, 7, 30)
        );
        assert!(builtin.product_terms.is_empty());
        for (text, key) in [
            (
                "membership = { term_days = 0 }",
                "defaults.membership.term_days",
            ),
            (
                "membership = { product_terms = { \"m\" = 0 } }",
                "defaults.membership.product_terms.m",
            ),
            ("membership = { grace_dayz = 1 }", "grace_dayz"),
        ] {
            let e = parse(&format!("[defaults]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
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
    fn out_of_range_numbers_name_their_key() {
        for (text, key) in [
            ("[defaults]\nwindow_days = 99999999999\n", "defaults.window_days"),
            (
                "[defaults]\ntop_n = 1\n[[communities]]\nid = \"a\"\n[[communities]]\nid = \"b\"\ncohort_periods = -1\n",
                "communities[1].cohort_periods",
            ),
            ("[email]\nport = 70000\n", "email.port"),
            (
                "[[sinks]]\nkind = \"webhook\"\nurl = \"http://x\"\nsecret_env = \"S\"\ntimeout_secs = -5\n",
                "sinks[0].timeout_secs",
            ),
            (
                "[engine]\ntarget_partitions = 99999999999999999999\n",
                "engine.target_partitions",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(&format!("key `{key}`")), "{text:?} gave {e}");
        }
    }

    #[test]
    fn umask_is_octal_and_owner_only_by_default() {
        assert_eq!(parse("").unwrap().umask, Umask(0o077));
        assert_eq!(parse("umask = \"0027\"\n").unwrap().umask, Umask(0o027));
        let e = parse("umask = \"0999\"\n").unwrap_err().to_string();
        assert!(e.contains("key `umask`") && e.contains("octal"), "{e}");
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
        // The example documents the built-in taxonomies, and every other section's defaults.
        assert_eq!(
            format!("{:?}", c.taxonomies.as_deref().unwrap()),
            format!("{:?}", default_taxonomies())
        );
        let defaults = Config::default_config();
        assert_eq!(format!("{:?}", c.engine), format!("{:?}", defaults.engine));
        assert_eq!(format!("{:?}", c.report), format!("{:?}", defaults.report));
        assert_eq!(format!("{:?}", c.email), format!("{:?}", defaults.email));
        assert_eq!(format!("{:?}", c.ingest), format!("{:?}", defaults.ingest));
        assert_eq!(c.privacy, defaults.privacy);
        assert_eq!(c.compaction, defaults.compaction);
        assert_eq!(c.lake, defaults.lake);
        assert_eq!(c.state_dir, defaults.state_dir);
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
