//! `[privacy]`: erasure and text retention (SPEC §8).

use serde::Deserialize;

/// `[privacy]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The environment variable holding the key of the keyed hashes `pulse forget` records
    /// (HMAC-SHA256 of each forgotten member id), so later imports drop their events without
    /// the ids being kept anywhere. Needed only once someone has been forgotten.
    #[serde(default = "default_forget_key_env")]
    pub forget_key_env: String,
    /// Days after which an event's `title` and `body` are set to null by each run (demand
    /// analysis needs only W and W′). Absent: text is kept.
    #[serde(default)]
    pub text_retention_days: Option<u32>,
}

fn default_forget_key_env() -> String {
    "PULSE_FORGET_KEY".into()
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            forget_key_env: default_forget_key_env(),
            text_retention_days: None,
        }
    }
}
