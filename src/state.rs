//! Run state in `state_dir`: what was sent and delivered, kept so that re-running an as_of does
//! not email or deliver twice, and so that a failure is retried by the next run.
//!
//! Each record kind is an append-only JSON-lines ledger (`emails.jsonl`, `deliveries.jsonl`):
//! a record is one line, written with one `write` and made durable with `fsync` before the
//! caller goes on. The latest record for a key wins. A crash can only tear the last line; a
//! line that does not parse is skipped with a warning when the ledger is read, so a torn tail
//! never blocks later runs. Writers hold [`StateDir::lock`], an OS file lock that the kernel
//! releases when a process dies, so a crashed run never leaves the state locked.

use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{IoContext, Result};

/// The state directory of one installation.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// Held while a process writes run state; released on drop (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Wait for and take the state lock.
    pub fn lock(&self) -> Result<StateLock> {
        std::fs::create_dir_all(&self.root)
            .io_context(|| format!("creating {}", self.root.display()))?;
        let file = crate::lake::lock_file(&self.root.join(".pulse.lock"))?;
        Ok(StateLock { _file: file })
    }

    /// The ledger stored in `<state_dir>/<name>.jsonl`.
    pub fn ledger<T>(&self, name: &str) -> Ledger<T> {
        Ledger {
            path: self.root.join(format!("{name}.jsonl")),
            _records: std::marker::PhantomData,
        }
    }
}

/// An append-only JSON-lines file of `T` records.
#[derive(Debug)]
pub struct Ledger<T> {
    path: PathBuf,
    _records: std::marker::PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Ledger<T> {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record, oldest first. A missing file is an empty ledger.
    pub fn read(&self) -> Result<Vec<T>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).io_context(|| format!("opening {}", self.path.display())),
        };
        let mut records = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.io_context(|| format!("reading {}", self.path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(r) => records.push(r),
                Err(e) => tracing::warn!(
                    file = %self.path.display(),
                    line = i + 1,
                    "skipping an unreadable state record (a write torn by a crash?): {e}"
                ),
            }
        }
        Ok(records)
    }

    /// Append one record and make it durable.
    pub fn append(&self, record: &T) -> Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)
                .io_context(|| format!("creating {}", parent.display()))?;
        }
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        let mut file = File::options()
            .create(true)
            .append(true)
            .open(&self.path)
            .io_context(|| format!("opening {}", self.path.display()))?;
        // A torn earlier tail would swallow this record's first line: start on a fresh line.
        if file.metadata().map(|m| m.len()).unwrap_or(0) > 0 && !ends_with_newline(&self.path) {
            line.insert(0, b'\n');
        }
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .io_context(|| format!("appending to {}", self.path.display()))
    }
}

fn ends_with_newline(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut last = [0u8; 1];
    File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::End(-1))?;
            f.read_exact(&mut last)
        })
        .map(|()| last[0] == b'\n')
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Rec {
        key: String,
        n: u32,
    }

    #[test]
    fn records_survive_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let ledger = state.ledger::<Rec>("things");
        assert!(ledger.read().unwrap().is_empty());
        ledger
            .append(&Rec {
                key: "a".into(),
                n: 1,
            })
            .unwrap();
        // A crash in the middle of the next append leaves half a line.
        let mut f = File::options().append(true).open(ledger.path()).unwrap();
        f.write_all(br#"{"key":"b","#).unwrap();
        ledger
            .append(&Rec {
                key: "c".into(),
                n: 3,
            })
            .unwrap();
        let keys: Vec<String> = ledger.read().unwrap().into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["a", "c"]);
    }
}

/// Serde for `NaiveDate` as `YYYY-MM-DD` (chrono's own serde support is not enabled: turning on
/// a feature of chrono would rebuild all of Arrow and DataFusion).
pub mod iso_date {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }

    /// The same for `Option<NaiveDate>` (null when absent).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(d: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.collect_str(d),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
            let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
            text.map(|t| t.parse().map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// Serde for `DateTime<Utc>` as RFC 3339 (for the same reason as [`iso_date`]).
pub mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    /// The same for `Option<DateTime<Utc>>`.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
            text.map(|t| {
                DateTime::parse_from_rfc3339(&t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
        }
    }
}
