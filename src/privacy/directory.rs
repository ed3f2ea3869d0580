//! The member directory (SPEC §8): member id → display name, apart from the lake.
//!
//! One SQLite file, `<state_dir>/members.sqlite`, so an operator can read or fix it with any
//! SQLite tool (`sqlite3 state/members.sqlite 'SELECT * FROM members'`):
//!
//! ```sql
//! CREATE TABLE members (
//!     member_id    TEXT PRIMARY KEY,  -- the canonical id (an identity-map alias is resolved)
//!     display_name TEXT NOT NULL,
//!     source       TEXT NOT NULL,     -- who said so: an adapter's source name, "import", "set"
//!     learned_at   TEXT NOT NULL      -- RFC 3339, UTC
//! );
//! ```
//!
//! A name set by hand (`pulse members set`, `pulse members import`) is not overwritten by a
//! name an adapter sees later: the operator's word wins over a platform nickname.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, IoContext, Result};

/// The sources whose names adapters may not overwrite.
const BY_HAND: [&str; 2] = ["set", "import"];

/// Longest display name kept (characters); longer ones are cut.
const MAX_NAME_CHARS: usize = 200;

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub member_id: String,
    pub display_name: String,
    pub source: String,
    pub learned_at: String,
}

/// An open member directory.
pub struct Directory {
    conn: Connection,
    path: PathBuf,
}

fn db_error(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::Directory {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A name as stored: trimmed, control characters dropped, at most [`MAX_NAME_CHARS`].
pub fn clean_name(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty()).then(|| cleaned.to_string())
}

impl Directory {
    /// `<state_dir>/members.sqlite`.
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join("members.sqlite")
    }

    /// Open (creating it if needed) the directory of `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Directory> {
        std::fs::create_dir_all(state_dir)
            .io_context(|| format!("creating {}", state_dir.display()))?;
        let path = Self::path_in(state_dir);
        let conn = Connection::open(&path).map_err(db_error(&path))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_error(&path))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA secure_delete = ON;
             CREATE TABLE IF NOT EXISTS members (
                 member_id    TEXT PRIMARY KEY,
                 display_name TEXT NOT NULL,
                 source       TEXT NOT NULL,
                 learned_at   TEXT NOT NULL
             );",
        )
        .map_err(db_error(&path))?;
        Ok(Directory { conn, path })
    }

    /// Open the directory only if it exists (readers: a report needs no empty database).
    pub fn open_existing(state_dir: &Path) -> Result<Option<Directory>> {
        if Self::path_in(state_dir).exists() {
            Self::open(state_dir).map(Some)
        } else {
            Ok(None)
        }
    }

    fn now() -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// Set names by hand (`source` = "set" or "import"): they replace whatever was there.
    /// Returns how many entries changed.
    pub fn set(&mut self, names: &[(String, String)], source: &str) -> Result<usize> {
        self.upsert(
            names,
            source,
            "members.display_name <> excluded.display_name OR members.source <> excluded.source",
        )
    }

    /// Names an adapter saw (`source` = its source name): new members are added and names it
    /// learned before are updated, but a name set by hand is kept.
    pub fn learn(&mut self, names: &[(String, String)], source: &str) -> Result<usize> {
        let condition = format!(
            "members.source NOT IN ('{}', '{}') AND members.display_name <> excluded.display_name",
            BY_HAND[0], BY_HAND[1]
        );
        self.upsert(names, source, &condition)
    }

    /// Insert `names` from `source`, replacing an existing entry where `replace_when` (SQL over
    /// `members` and `excluded`) holds; one transaction. Returns how many entries changed.
    fn upsert(
        &mut self,
        names: &[(String, String)],
        source: &str,
        replace_when: &str,
    ) -> Result<usize> {
        if names.is_empty() {
            return Ok(0);
        }
        let at = Self::now();
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(db_error(&path))?;
        let mut changed = 0;
        {
            let mut stmt = tx
                .prepare(&format!(
                    "INSERT INTO members (member_id, display_name, source, learned_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (member_id) DO UPDATE
                     SET display_name = excluded.display_name, source = excluded.source,
                         learned_at = excluded.learned_at
                     WHERE {replace_when}"
                ))
                .map_err(db_error(&path))?;
            for (id, name) in names {
                let Some(name) = clean_name(name) else {
                    continue;
                };
                changed += stmt
                    .execute(params![id, name, source, at])
                    .map_err(db_error(&path))?;
            }
        }
        tx.commit().map_err(db_error(&path))?;
        Ok(changed)
    }

    /// The display name of one member.
    pub fn name(&self, member_id: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT display_name FROM members WHERE member_id = ?1",
                [member_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(db_error(&self.path))
    }

    /// The display names of these members (those that have one).
    pub fn names<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for id in ids {
            if out.contains_key(id) {
                continue;
            }
            if let Some(name) = self.name(id)? {
                out.insert(id.to_string(), name);
            }
        }
        Ok(out)
    }

    /// Every entry, by member id.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT member_id, display_name, source, learned_at FROM members ORDER BY member_id",
            )
            .map_err(db_error(&self.path))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(Entry {
                    member_id: row.get(0)?,
                    display_name: row.get(1)?,
                    source: row.get(2)?,
                    learned_at: row.get(3)?,
                })
            })
            .map_err(db_error(&self.path))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(db_error(&self.path))
    }

    /// Remove members; returns how many entries went. Deleted content is zeroed
    /// (`secure_delete`), the database vacuumed and the write-ahead log checkpointed and
    /// truncated, so a removed name lingers in no page of either file.
    pub fn remove(&mut self, ids: &[String]) -> Result<usize> {
        let mut removed = 0;
        for id in ids {
            removed += self
                .conn
                .execute("DELETE FROM members WHERE member_id = ?1", [id])
                .map_err(db_error(&self.path))?;
        }
        if removed > 0 {
            self.conn
                .execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(db_error(&self.path))?;
        }
        Ok(removed)
    }
}

/// Read `member_id,display_name` rows from a CSV file in UTF-8 (with or without a BOM) or
/// GBK/GB18030 (what Excel saves in a Chinese locale). A header row naming the columns is
/// optional; rows without both cells are skipped and counted.
pub fn read_names_csv(path: &Path) -> Result<(Vec<(String, String)>, usize)> {
    let bytes = std::fs::read(path).io_context(|| format!("reading {}", path.display()))?;
    let text = crate::ingest::table::decode(path, &bytes, crate::ingest::table::Encoding::Auto)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut names = Vec::new();
    let mut skipped = 0;
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| Error::Input {
            path: path.to_path_buf(),
            message: format!("row {}: {e}", i + 1),
        })?;
        let id = record.get(0).map(str::trim).unwrap_or("");
        let name = record.get(1).map(str::trim).unwrap_or("");
        if i == 0 && id.eq_ignore_ascii_case("member_id") {
            continue;
        }
        if id.is_empty() || name.is_empty() {
            skipped += 1;
            continue;
        }
        names.push((id.to_string(), name.to_string()));
    }
    Ok((names, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_set_by_hand_win_over_names_adapters_learn() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Directory::open(dir.path()).unwrap();
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(d.learn(&[pair("u1", "alice_forum")], "forum").unwrap(), 1);
        assert_eq!(d.set(&[pair("u1", "Alice 王")], "set").unwrap(), 1);
        assert_eq!(d.learn(&[pair("u1", "alice_2")], "forum").unwrap(), 0);
        assert_eq!(d.name("u1").unwrap().as_deref(), Some("Alice 王"));
        // Learning the same name again changes nothing; a new member is added.
        assert_eq!(d.learn(&[pair("u2", " Bob\n")], "slack").unwrap(), 1);
        assert_eq!(d.learn(&[pair("u2", "Bob")], "slack").unwrap(), 0);
        assert_eq!(d.list().unwrap().len(), 2);
        assert_eq!(d.remove(&["u1".into()]).unwrap(), 1);
        assert_eq!(d.name("u1").unwrap(), None);
        let bytes = std::fs::read(Directory::path_in(dir.path())).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("Alice"));
    }

    #[test]
    fn gbk_and_utf8_csv_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let text = "member_id,display_name\nu1,王小明\nu2,\"Li, Lei\"\n,nobody\n";
        let utf8 = dir.path().join("a.csv");
        std::fs::write(&utf8, format!("\u{feff}{text}")).unwrap();
        let gbk = dir.path().join("b.csv");
        std::fs::write(&gbk, encoding_rs::GBK.encode(text).0).unwrap();
        let a = read_names_csv(&utf8).unwrap();
        assert_eq!(a, read_names_csv(&gbk).unwrap());
        assert_eq!(
            a.0,
            vec![
                ("u1".to_string(), "王小明".to_string()),
                ("u2".to_string(), "Li, Lei".to_string())
            ]
        );
        assert_eq!(a.1, 1);
    }
}
