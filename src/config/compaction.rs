//! `[compaction]`: merging the small event files imports and spool compactions leave.

use serde::Deserialize;

/// `[compaction]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CompactionConfig {
    /// After each spool compaction of `pulse serve` and the intake of each run, event
    /// partitions with more than this many files are merged into one file each (0: never
    /// automatically; `pulse compact` merges every partition of more than one file).
    #[serde(default = "default_max_files")]
    pub max_files: u32,
}

/// With the spool moved every 15 minutes, today's partition reaches 8 files in two hours:
/// few enough that a query opens a handful of files, and today's partition is rewritten
/// about a dozen times a day (each rewrite copies at most one day of one community).
fn default_max_files() -> u32 {
    8
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            max_files: default_max_files(),
        }
    }
}
