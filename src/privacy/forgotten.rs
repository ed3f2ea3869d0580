//! The record of who was forgotten: keyed hashes, never ids (SPEC §8).
//!
//! `<lake>/_pulse/forgotten.json` holds, for each erasure, HMAC-SHA256(key, member_id) in hex and
//! the community it was limited to (none: every community). The key is read from the
//! environment variable `[privacy] forget_key_env` names (the file records that name, not the
//! key), so whoever can read the lake cannot test guessed ids against it without the key.
//!
//! Every writer of events (`pulse import`, export pickup, spool compaction of webhook events)
//! loads it in [`crate::lake::events::EventWriter::begin`]: an event by a forgotten member is
//! dropped and counted as `forgotten`, and a forgotten `target_member_id` becomes null. It lives
//! in the lake, beside the events it guards, so no writer can miss it.

use std::collections::HashSet;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::lake::Lake;

/// The registry's path inside the lake.
pub const FORGOTTEN: &str = "_pulse/forgotten.json";

/// One forgotten member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ForgottenEntry {
    /// HMAC-SHA256 of the member id, hex.
    pub hash: String,
    /// Limited to one community (`pulse forget --community C`); none: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct File {
    /// The environment variable that holds the key.
    key_env: String,
    entries: Vec<ForgottenEntry>,
}

/// The loaded registry, with its key: answers "is this member forgotten here?".
#[derive(Debug, Clone, Default)]
pub struct Forgotten {
    key: Vec<u8>,
    key_env: String,
    entries: HashSet<ForgottenEntry>,
}

/// HMAC-SHA256(key, member_id), hex.
pub fn keyed_hash(key: &[u8], member_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(member_id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key from `env`: at least 16 bytes, or an error naming the variable.
pub fn read_key(env: &str) -> Result<Vec<u8>> {
    match std::env::var(env) {
        Ok(key) if key.len() >= 16 => Ok(key.into_bytes()),
        Ok(_) => Err(Error::Usage(format!(
            "the forget key in ${env} is shorter than 16 bytes: use a long random value (e.g. `openssl rand -hex 32`)"
        ))),
        Err(_) => Err(Error::Usage(format!(
            "${env} is not set: it holds the key of the keyed hashes that record forgotten members ([privacy] forget_key_env); set it to a long random value and keep it (e.g. `openssl rand -hex 32`)"
        ))),
    }
}

impl Forgotten {
    /// Load the lake's registry. Empty (and no key needed) when nobody was forgotten.
    pub fn load(lake: &Lake) -> Result<Forgotten> {
        if !lake.exists(FORGOTTEN)? {
            return Ok(Forgotten::default());
        }
        let bytes = lake
            .read_many(&[FORGOTTEN.to_string()])?
            .pop()
            .unwrap_or_default();
        let file: File = serde_json::from_slice(&bytes)?;
        if file.entries.is_empty() {
            return Ok(Forgotten::default());
        }
        Ok(Forgotten {
            key: read_key(&file.key_env)?,
            key_env: file.key_env,
            entries: file.entries.into_iter().collect(),
        })
    }

    /// Load, for adding entries with the key from `key_env` (the one `[privacy]` names). A
    /// registry recorded under another variable must be read with the same key.
    pub fn load_for_update(lake: &Lake, key_env: &str) -> Result<Forgotten> {
        let mut loaded = Forgotten::load(lake)?;
        if loaded.entries.is_empty() {
            loaded.key = read_key(key_env)?;
            loaded.key_env = key_env.to_string();
        }
        Ok(loaded)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry recording `member` (limited to `community`, or everywhere).
    pub fn entry(&self, member: &str, community: Option<&str>) -> ForgottenEntry {
        ForgottenEntry {
            hash: keyed_hash(&self.key, member),
            community: community.map(str::to_string),
        }
    }

    /// Whether `member` is forgotten in `community`.
    pub fn contains(&self, community: &str, member: &str) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let hash = keyed_hash(&self.key, member);
        self.entries
            .iter()
            .any(|e| e.hash == hash && e.community.as_deref().is_none_or(|c| c == community))
    }

    /// Add entries; returns how many were new.
    pub fn add(&mut self, entries: impl IntoIterator<Item = ForgottenEntry>) -> usize {
        entries
            .into_iter()
            .filter(|e| self.entries.insert(e.clone()))
            .count()
    }

    /// Write the registry back (one small object, replaced whole).
    pub fn save(&self, lake: &Lake) -> Result<()> {
        let mut entries: Vec<ForgottenEntry> = self.entries.iter().cloned().collect();
        entries.sort_by(|a, b| (&a.hash, &a.community).cmp(&(&b.hash, &b.community)));
        let file = File {
            key_env: self.key_env.clone(),
            entries,
        };
        lake.write(FORGOTTEN, &serde_json::to_vec_pretty(&file)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_hash_is_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            keyed_hash(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
