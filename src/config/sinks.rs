//! `[[sinks]]`: where ranked member lists go (files, signed webhooks).

use std::path::PathBuf;

use serde::Deserialize;

use super::ByteSize;

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    File {
        path: PathBuf,
        #[serde(default = "default_sink_formats")]
        formats: Vec<SinkFormat>,
        /// Add each member's display name (member directory, SPEC §8) as `display_name`.
        #[serde(default)]
        include_names: bool,
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
        /// Add each member's display name (member directory, SPEC §8) as `display_name`.
        #[serde(default)]
        include_names: bool,
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

impl SinkConfig {
    /// Whether the sink's lists carry display names.
    pub fn include_names(&self) -> bool {
        match self {
            SinkConfig::File { include_names, .. } | SinkConfig::Webhook { include_names, .. } => {
                *include_names
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkFormat {
    Csv,
    Json,
    Parquet,
}
