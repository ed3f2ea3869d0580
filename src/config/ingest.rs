//! `[ingest]`: the webhook receiver, its sources, export folders and identities.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ByteSize, Cron};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Address of the webhook receiver.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Cron with seconds: how often the spool is moved into the lake.
    #[serde(default = "default_ingest_schedule")]
    pub schedule: Cron,
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
    /// Seconds a client has to send a request's headers (slow clients are cut off).
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds a request may take once its headers are in, body included (408 beyond).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Connections served at once; more wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// After SIGTERM, seconds in-flight requests get to finish before the receiver stops.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// Largest decompressed size of one entry of a Slack export zip.
    #[serde(default = "default_export_entry")]
    pub export_max_entry_bytes: ByteSize,
    /// Largest decompressed size of a whole Slack export zip.
    #[serde(default = "default_export_total")]
    pub export_max_total_bytes: ByteSize,
    /// More keys of personal data dropped from `properties` and quarantined lines, besides
    /// the built-in ones (`crate::event::PERSONAL_KEY_ENDINGS`); matched the same way.
    #[serde(default)]
    pub scrub_keys: Vec<String>,
    /// An export file is imported once its size and modification time were the same at two
    /// looks this many seconds apart within a run, or at the previous run and this one.
    #[serde(default = "default_settle")]
    pub export_settle_secs: u64,
}

fn default_header_timeout() -> u64 {
    10
}
fn default_request_timeout() -> u64 {
    30
}
fn default_max_connections() -> u32 {
    256
}
fn default_shutdown_grace() -> u64 {
    10
}
fn default_export_entry() -> ByteSize {
    ByteSize(256 << 20)
}
fn default_export_total() -> ByteSize {
    ByteSize(2 << 30)
}
fn default_settle() -> u64 {
    5
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
            header_timeout_secs: default_header_timeout(),
            request_timeout_secs: default_request_timeout(),
            max_connections: default_max_connections(),
            shutdown_grace_secs: default_shutdown_grace(),
            export_max_entry_bytes: default_export_entry(),
            export_max_total_bytes: default_export_total(),
            scrub_keys: Vec::new(),
            export_settle_secs: default_settle(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_ingest_schedule() -> Cron {
    Cron::try_from("0 */15 * * * *".to_string()).expect("a valid cron expression")
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
    /// The variable holding the signing secret (generic, discourse, stripe,
    /// standard_webhooks, slack; dingtalk: the robot's AppSecret).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// WeCom, DingTalk event subscriptions: the variable holding the callback Token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// WeCom, DingTalk event subscriptions: the variable holding the 43-character
    /// EncodingAESKey.
    #[serde(default)]
    pub aes_key_env: Option<String>,
    /// WeCom, DingTalk event subscriptions: the receive id the decrypted messages must carry
    /// (the corp id; for a DingTalk app's event subscription, its app key).
    #[serde(default)]
    pub receive_id: Option<String>,
    /// Feishu: the variable holding the Verification Token.
    #[serde(default)]
    pub verification_token_env: Option<String>,
    /// Feishu: the variable holding the Encrypt Key.
    #[serde(default)]
    pub encrypt_key_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Generic,
    Discourse,
    Stripe,
    StandardWebhooks,
    /// Slack Events API (signing secret v0).
    Slack,
    /// 企业微信 callbacks (WXBizMsgCrypt: SHA-1 signature, AES-256-CBC).
    Wecom,
    /// 飞书 / Lark event subscriptions (schema 2.0, encrypted and signed).
    Feishu,
    /// 钉钉 robot callbacks (`timestamp` + `sign` headers) and event subscriptions
    /// (WXBizMsgCrypt in JSON).
    Dingtalk,
}

impl SourceKind {
    /// The name used in the config.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Generic => "generic",
            SourceKind::Discourse => "discourse",
            SourceKind::Stripe => "stripe",
            SourceKind::StandardWebhooks => "standard_webhooks",
            SourceKind::Slack => "slack",
            SourceKind::Wecom => "wecom",
            SourceKind::Feishu => "feishu",
            SourceKind::Dingtalk => "dingtalk",
        }
    }

    /// The sets of keys a source of this kind takes, besides name, kind and community: every
    /// key of a set or none of it, and at least one whole set. DingTalk has two (robot
    /// callbacks, event subscriptions); one source may take both.
    pub fn key_sets(self) -> &'static [&'static [&'static str]] {
        const CRYPT: &[&str] = &["token_env", "aes_key_env", "receive_id"];
        match self {
            SourceKind::Wecom => &[CRYPT],
            SourceKind::Dingtalk => &[&["secret_env"], CRYPT],
            SourceKind::Feishu => &[&["verification_token_env", "encrypt_key_env"]],
            _ => &[&["secret_env"]],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    pub path: PathBuf,
    pub format: ExportFormat,
    /// The community of the folder's events (a `table` mapping may name its own).
    pub community: String,
    /// `format = "table"`: the mapping file (`crate::ingest::table::Mapping`) its spreadsheets
    /// are read through; relative to the directory `pulse` runs in.
    #[serde(default)]
    pub mapping: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Ndjson,
    Csv,
    SlackExport,
    DiscordExport,
    /// Spreadsheets (`.csv`, `.xlsx`) read through `mapping`.
    Table,
}
