//! `[engine]`: who executes the SQL, with how much memory.

use serde::Deserialize;

use super::ByteSize;

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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    #[default]
    Local,
    BallistaStandalone,
    Ballista,
}
