//! The Parquet lake (SPEC §5): where each table lives, how files appear atomically, and the
//! lock that serializes writers.
//!
//! ```text
//! <lake>/events/community_id=<c>/event_date=<YYYY-MM-DD UTC>/part-<hash>.parquet
//! <lake>/quarantine/<YYYY-MM-DD>/<hash>.ndjson
//! <lake>/metrics/<table>/community_id=<c>/as_of=<YYYY-MM-DD>/part-0.parquet
//! <lake>/reports/<c>/<as_of>/report.html
//! ```
//! Code names places in the lake by lake paths (`events/community_id=…`, `/`-separated) and the
//! lake maps them to a directory or to object keys. A lake is a local directory (a path or
//! `file://`) or an object store (`s3://`, `gs://`, `az://`, see [`remote`]).
//!
//! Writers stage files on the local disk (`<lake>/_staging/`, invisible to `events/**/*.parquet`
//! globs; for object stores a work directory per lake), then publish them: locally one
//! filesystem sync per batch and a rename per file; on object stores one upload per file.
//! A writer holds `.pulse.lock` (an OS file lock, released by the kernel if the process dies),
//! so a killed writer never leaves the lake locked.
//!
//! Each writer stages in its own directory, `_staging/<kind>-<pid>-<nanos>/`, and holds an OS
//! lock on `_staging/<kind>-<pid>-<nanos>.lock` while it lives ([`Lake::stage`]). Report
//! previews and runs stage without the lake lock, so the importer's cleanup
//! ([`Lake::clear_staging`]) removes only directories whose lock nobody holds: what writers
//! that died left behind, never a live writer's files.

pub mod compact;
pub mod events;
pub mod parquet;
pub mod remote;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{IoContext, Result};

/// Lake paths of the tables (SPEC §5).
pub const EVENTS: &str = "events";
pub const QUARANTINE: &str = "quarantine";

pub fn metrics_path(table: &str) -> String {
    format!("metrics/{table}")
}

/// Derived per-month rollups (see `models::rollups`).
pub fn rollups_path(table: &str) -> String {
    format!("rollups/{table}")
}

/// Generated reports: `reports/<community>/<as_of>` (SPEC §5).
pub fn report_path(community: &str, as_of: chrono::NaiveDate) -> String {
    format!("reports/{community}/{as_of}")
}

/// A lake: a local directory or an object store.
#[derive(Debug, Clone)]
pub struct Lake {
    /// The lake directory, or for an object store the local work directory (staging, lock).
    root: PathBuf,
    remote: Option<Arc<remote::Remote>>,
}

/// Exclusive ownership of the lake for writing; dropped = released.
#[derive(Debug)]
pub struct LakeLock {
    _file: File,
}

/// One writer's staging directory ([`Lake::stage`]); removed with its lock when dropped.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    lock: PathBuf,
    _file: File,
}

impl Staging {
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // The directory may have been moved into place whole; then there is nothing to remove.
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.lock);
    }
}

impl Lake {
    /// Open the lake at `location`: a path, a `file://` URL, or an object-store URL
    /// (`s3://bucket/prefix`, `gs://…`, `az://…`). A local lake is created if needed.
    pub fn open(location: &str) -> Result<Lake> {
        let local = match location.strip_prefix("file://") {
            Some(p) => Some(PathBuf::from(p)),
            None if location.contains("://") => None,
            None => Some(PathBuf::from(location)),
        };
        let Some(path) = local else {
            let remote = remote::Remote::open(location)?;
            let root = remote::work_dir(remote.url());
            std::fs::create_dir_all(&root)
                .io_context(|| format!("creating the lake's work directory {}", root.display()))?;
            return Ok(Lake {
                root,
                remote: Some(Arc::new(remote)),
            });
        };
        std::fs::create_dir_all(path.join(EVENTS))
            .io_context(|| format!("creating the lake at {}", path.display()))?;
        let root = path
            .canonicalize()
            .io_context(|| format!("opening the lake at {}", path.display()))?;
        Ok(Lake { root, remote: None })
    }

    /// Where the lake path `rel` is, for messages: a local path or a URL.
    pub fn display(&self, rel: &str) -> String {
        match &self.remote {
            Some(r) => format!("{}{rel}", r.url()),
            None => self.root.join(rel).display().to_string(),
        }
    }

    /// The directory of a local lake; `None` for an object store.
    pub fn local_root(&self) -> Option<&Path> {
        self.remote.is_none().then_some(self.root.as_path())
    }

    /// The URL DataFusion lists for the table at `rel` (created first on a local lake, so an
    /// empty table is a valid table).
    pub fn table_url(&self, rel: &str) -> Result<String> {
        match &self.remote {
            Some(r) => Ok(format!("{}{rel}/", r.url())),
            None => {
                let dir = self.root.join(rel);
                std::fs::create_dir_all(&dir)
                    .io_context(|| format!("creating {}", dir.display()))?;
                Ok(format!("{}/", dir.display()))
            }
        }
    }

    /// The object store a query engine needs to read this lake, keyed by its `scheme://bucket`
    /// URL (`None` for a local lake: local files need nothing).
    pub fn engine_store(&self) -> Result<Option<(url::Url, Arc<dyn object_store::ObjectStore>)>> {
        self.remote
            .as_ref()
            .map(|r| Ok((r.store_url(), r.store_for_engine()?)))
            .transpose()
    }

    /// Let `ctx` read this lake.
    pub fn register_store(&self, ctx: &datafusion::prelude::SessionContext) -> Result<()> {
        if let Some((url, store)) = self.engine_store()? {
            ctx.register_object_store(&url, store);
        }
        Ok(())
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("_staging")
    }

    /// Wait for and take the writer lock.
    pub fn lock(&self) -> Result<LakeLock> {
        Ok(LakeLock {
            _file: lock_file(&self.root.join(".pulse.lock"))?,
        })
    }

    /// A staging directory of this writer's own (`kind` names what it stages, for people
    /// looking at the lake), removed when dropped and never by another writer while this
    /// process lives (see the module docs).
    pub fn stage(&self, kind: &str) -> Result<Staging> {
        let root = self.staging_dir();
        std::fs::create_dir_all(&root).io_context(|| format!("creating {}", root.display()))?;
        let name = format!("{kind}-{}", unique_suffix());
        let lock = root.join(format!("{name}.lock"));
        // Locked before the directory exists, so a directory without a held lock is a dead
        // writer's. (A cleaner may hold the new lock for a moment: wait for it.)
        let file = File::options()
            .create_new(true)
            .write(true)
            .open(&lock)
            .io_context(|| format!("creating {}", lock.display()))?;
        file.lock()
            .io_context(|| format!("locking {}", lock.display()))?;
        let dir = root.join(&name);
        std::fs::create_dir(&dir).io_context(|| format!("creating {}", dir.display()))?;
        Ok(Staging {
            dir,
            lock,
            _file: file,
        })
    }

    /// Remove what writers that died left in staging: every entry whose `.lock` no process
    /// holds (or that has none, as staging of earlier versions), and directories replaced
    /// more than [`REPLACED_GRACE`] ago. Call with the lock held.
    pub fn clear_staging(&self) -> Result<()> {
        let root = self.staging_dir();
        let entries = match std::fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).io_context(|| format!("listing {}", root.display())),
        };
        for entry in entries {
            let entry = entry.io_context(|| format!("listing {}", root.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".lock") {
                continue; // removed with its directory
            }
            if name.starts_with(REPLACED) {
                continue; // see `remove_replaced`
            }
            let lock = root.join(format!("{name}.lock"));
            let held = match File::open(&lock) {
                Ok(f) => f.try_lock().is_err(),
                Err(_) => false,
            };
            if held {
                continue;
            }
            let path = entry.path();
            let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).io_context(|| format!("clearing {}", path.display()))
                }
                _ => {}
            }
            let _ = std::fs::remove_file(&lock);
        }
        self.remove_replaced(REPLACED_GRACE)
    }

    /// Remove the directories [`Lake::replace_dirs`] replaced more than `grace` ago (all of
    /// them with zero: what an erasure replaced must not linger).
    pub fn remove_replaced(&self, grace: std::time::Duration) -> Result<()> {
        let root = self.staging_dir();
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(());
        };
        let now = std::time::SystemTime::now();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(REPLACED) else {
                continue;
            };
            let replaced_at = rest.split('-').next().and_then(|s| s.parse::<u64>().ok());
            let age = replaced_at.map(|secs| {
                now.duration_since(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                    .unwrap_or_default()
            });
            if age.is_some_and(|age| age < grace) {
                continue;
            }
            match std::fs::remove_dir_all(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).io_context(|| format!("removing {}", entry.path().display()))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Publish staged files at their lake paths: `(staged file, lake path)`. Locally, one sync
    /// of the filesystem makes every staged file durable (instead of one fsync per file), then
    /// each is renamed into place and the renames are made durable too; on an object store
    /// each file is uploaded as one object. Readers see each file whole or not at all.
    pub fn publish(&self, moves: &[(PathBuf, String)]) -> Result<()> {
        if moves.is_empty() {
            return Ok(());
        }
        if let Some(r) = &self.remote {
            return r.upload(moves);
        }
        sync_all(&self.root, moves.iter().map(|(staged, _)| staged.as_path()))?;
        // Failpoint for the crash-consistency test: die after this many renames.
        let abort_after: Option<usize> = std::env::var("PULSE_TEST_ABORT_AFTER_RENAMES")
            .ok()
            .and_then(|v| v.parse().ok());
        let renamed = std::sync::Mutex::new(0usize);
        let targets: Vec<PathBuf> = moves.iter().map(|(_, rel)| self.root.join(rel)).collect();
        // On all cores: an import creates a directory per partition, and creating one is most
        // of a rename's cost (a new inode); the renames are independent of each other.
        moves
            .par_iter()
            .zip(&targets)
            .try_for_each(|((staged, _), target)| -> Result<()> {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .io_context(|| format!("creating {}", parent.display()))?;
                }
                // With the failpoint set the renames take turns, so exactly that many happen.
                let _turn = abort_after.map(|n| {
                    let mut done = renamed.lock().unwrap_or_else(|e| e.into_inner());
                    if *done == n {
                        std::process::abort();
                    }
                    *done += 1;
                    done
                });
                std::fs::rename(staged, target)
                    .io_context(|| format!("moving {} into place", target.display()))
            })?;
        sync_all(&self.root, targets.iter().filter_map(|t| t.parent()))
    }

    /// Replace the directory at each lake path with its staged directory: `(staged, lake
    /// path)`. Used for metric, rollup and report partitions: recomputing one replaces it
    /// whole. Locally each swap is atomic (see [`replace_dir`]); on an object store see
    /// [`remote::Remote::replace_dirs`].
    pub fn replace_dirs(&self, swaps: &[(PathBuf, String)]) -> Result<()> {
        if swaps.is_empty() {
            return Ok(());
        }
        if let Some(r) = &self.remote {
            return r.replace_dirs(swaps);
        }
        sync_all(&self.root, swaps.iter().map(|(staged, _)| staged.as_path()))?;
        let targets: Vec<PathBuf> = swaps.iter().map(|(_, rel)| self.root.join(rel)).collect();
        for ((staged, _), target) in swaps.iter().zip(&targets) {
            if let Some(old) = swap_dir(staged, target)? {
                // Not removed yet: a reader listing the old directory through an open handle
                // would see its entries vanish and miss files without an error. After
                // [`REPLACED_GRACE`] the next writer's `clear_staging` removes it.
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let aside = self
                    .staging_dir()
                    .join(format!("{REPLACED}{secs}-{}", unique_suffix()));
                std::fs::rename(&old, &aside)
                    .io_context(|| format!("moving the old {} aside", target.display()))?;
            }
        }
        sync_all(&self.root, targets.iter().filter_map(|t| t.parent()))
    }

    /// Finish or clean up earlier partition replacements below `rel` on an object store (see
    /// [`remote::Remote::tidy`]); a local lake swaps directories and has nothing to tidy.
    pub fn tidy_replacements(&self, rel: &str) -> Result<()> {
        match &self.remote {
            Some(r) => r.tidy(rel),
            None => Ok(()),
        }
    }

    /// Write `bytes` at the lake path `rel`, atomically.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        match &self.remote {
            Some(r) => r.put(rel, bytes),
            None => write_atomic(&self.root.join(rel), bytes),
        }
    }

    /// Remove everything at and below the lake path `rel`.
    pub fn remove_all(&self, rel: &str) -> Result<()> {
        match &self.remote {
            Some(r) => r.delete(&r.list_files(rel)?),
            None => {
                let dir = self.root.join(rel);
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(e).io_context(|| format!("removing {}", dir.display()))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Remove the file at the lake path `rel` (nothing when it is not there).
    pub fn remove_file(&self, rel: &str) -> Result<()> {
        match &self.remote {
            Some(r) => r.delete(&[rel.to_string()]),
            None => {
                let path = self.root.join(rel);
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(e).io_context(|| format!("removing {}", path.display()))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Whether a file exists at the lake path `rel`.
    pub fn exists(&self, rel: &str) -> Result<bool> {
        match &self.remote {
            Some(r) => r.exists(rel),
            None => Ok(self.root.join(rel).exists()),
        }
    }

    /// Lake paths of every visible file below `rel` (names starting with `.` or `_` are
    /// skipped at every level, as DataFusion and DuckDB skip them), sorted.
    pub fn list_files(&self, rel: &str) -> Result<Vec<String>> {
        let mut files = match &self.remote {
            Some(r) => r.list_files(rel)?,
            None => {
                let mut out = Vec::new();
                list_local(&self.root.join(rel), rel, &mut out)?;
                out
            }
        };
        files.retain(|f| {
            f[rel.len()..]
                .split('/')
                .all(|part| !part.starts_with(['.', '_']))
        });
        files.sort();
        Ok(files)
    }

    /// Names of the visible directories directly below the lake path `rel`, sorted.
    pub fn list_dirs(&self, rel: &str) -> Result<Vec<String>> {
        let mut dirs = match &self.remote {
            Some(r) => r.list_dirs(rel)?,
            None => {
                let dir = self.root.join(rel);
                match std::fs::read_dir(&dir) {
                    Ok(entries) => entries
                        .filter_map(|e| e.ok())
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(e).io_context(|| format!("listing {}", dir.display())),
                }
            }
        };
        dirs.retain(|d| !d.starts_with(['.', '_']));
        dirs.sort();
        Ok(dirs)
    }

    /// Ids of the communities with events in the lake, sorted.
    pub fn communities(&self) -> Result<Vec<String>> {
        Ok(self
            .list_dirs(EVENTS)?
            .iter()
            .filter_map(|d| d.strip_prefix("community_id="))
            .map(str::to_string)
            .collect())
    }

    /// Read many lake files at once (in the order asked).
    pub fn read_many(&self, rels: &[String]) -> Result<Vec<bytes::Bytes>> {
        match &self.remote {
            Some(r) => r.get_many(rels),
            None => {
                use rayon::prelude::*;
                rels.par_iter()
                    .map(|rel| {
                        let path = self.root.join(rel);
                        std::fs::read(&path)
                            .map(bytes::Bytes::from)
                            .io_context(|| format!("reading {}", path.display()))
                    })
                    .collect()
            }
        }
    }
}

/// Local files below `dir` (lake path `rel`), appended to `out` as lake paths.
fn list_local(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).io_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.io_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = format!("{rel}/{name}");
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            list_local(&entry.path(), &child, out)?;
        } else {
            out.push(child);
        }
    }
    Ok(())
}

/// Put local directory `staged` at `target` and remove the old one (see [`swap_dir`]).
pub fn replace_dir(staged: &Path, target: &Path) -> Result<()> {
    match swap_dir(staged, target)? {
        Some(old) => std::fs::remove_dir_all(&old)
            .io_context(|| format!("removing the old {}", target.display())),
        None => Ok(()),
    }
}

/// Staging entries holding replaced directories: `replaced-<unix secs>-<unique>`.
const REPLACED: &str = "replaced-";

/// How long a replaced directory outlives its replacement ([`Lake::replace_dirs`]): longer
/// than any reader takes to list a directory.
const REPLACED_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Put local directory `staged` at `target`, creating `target`'s parent; returns where the
/// old directory is now, if there was one. When `target` exists, Linux swaps the two in one
/// step (`renameat2(RENAME_EXCHANGE)`, the old directory is then at `staged`), so readers see
/// the old or the new directory, never none; elsewhere (or on filesystems without it) the
/// old one is moved aside first.
fn swap_dir(staged: &Path, target: &Path) -> Result<Option<PathBuf>> {
    let context = || format!("moving {} into place", target.display());
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).io_context(|| format!("creating {}", parent.display()))?;
    }
    if !target.exists() {
        return std::fs::rename(staged, target)
            .io_context(context)
            .map(|_| None);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c =
            |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL");
        let (a, b) = (c(staged), c(target));
        // SAFETY: both pointers are valid NUL-terminated paths for the duration of the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            return Ok(Some(staged.to_path_buf()));
        }
    }
    let aside = target.with_file_name(format!(
        ".{}.old-{}",
        target.file_name().and_then(|n| n.to_str()).unwrap_or("dir"),
        unique_suffix()
    ));
    std::fs::rename(target, &aside).io_context(context)?;
    std::fs::rename(staged, target).io_context(context)?;
    Ok(Some(aside))
}

/// Open `path` and wait for an exclusive OS lock on it. The kernel releases the lock when the
/// holder exits, however it exits, so a crashed process never leaves it stuck.
pub fn lock_file(path: &Path) -> Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .io_context(|| format!("opening {}", path.display()))?;
    if file.try_lock().is_err() {
        tracing::info!(
            "another pulse process holds {}; waiting for it",
            path.display()
        );
        file.lock()
            .io_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

/// A string unique to this process and moment, for staging names.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// Write `bytes` to `path` atomically (temp file beside it, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).io_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        unique_suffix()
    ));
    let mut f = File::create(&tmp).io_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .io_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all()
        .io_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).io_context(|| format!("moving {} into place", path.display()))?;
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Make `paths` durable. On Linux one `syncfs` covers the whole filesystem of the lake, which
/// is far cheaper than an fsync per file when an import writes hundreds of partitions.
fn sync_all<'a>(root: &Path, paths: impl Iterator<Item = &'a Path>) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let _ = paths;
        use std::os::fd::AsRawFd;
        let dir = File::open(root).io_context(|| format!("opening {}", root.display()))?;
        // SAFETY: syncfs takes a valid open file descriptor, which `dir` owns for this call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error())
                .io_context(|| format!("syncing {}", root.display()));
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = root;
        for p in paths {
            File::open(p)
                .and_then(|f| f.sync_all())
                .io_context(|| format!("syncing {}", p.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lake_paths_publish_list_and_replace_on_a_local_lake() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&format!("file://{}", dir.path().display())).unwrap();
        assert_eq!(
            lake.local_root(),
            Some(dir.path().canonicalize().unwrap().as_path())
        );
        let staged = lake.staging_dir().join("x");
        std::fs::create_dir_all(&staged).unwrap();
        for name in ["a.parquet", "b.parquet"] {
            std::fs::write(staged.join(name), name).unwrap();
        }
        lake.publish(&[
            (
                staged.join("a.parquet"),
                "events/community_id=c/event_date=2026-01-01/a.parquet".into(),
            ),
            (
                staged.join("b.parquet"),
                "events/community_id=d/event_date=2026-01-02/b.parquet".into(),
            ),
        ])
        .unwrap();
        std::fs::create_dir_all(dir.path().join("events/_hidden")).unwrap();
        std::fs::write(dir.path().join("events/_hidden/x.parquet"), "").unwrap();
        std::fs::write(dir.path().join("events/.tmp.parquet"), "").unwrap();
        assert_eq!(
            lake.list_files(EVENTS).unwrap(),
            [
                "events/community_id=c/event_date=2026-01-01/a.parquet",
                "events/community_id=d/event_date=2026-01-02/b.parquet"
            ]
        );
        assert_eq!(
            lake.list_dirs(EVENTS).unwrap(),
            ["community_id=c", "community_id=d"]
        );
        assert!(lake.list_dirs("no/such/dir").unwrap().is_empty());
        let bytes = lake
            .read_many(&["events/community_id=d/event_date=2026-01-02/b.parquet".into()])
            .unwrap();
        assert_eq!(&bytes[0][..], b"b.parquet");

        // Replacing a partition swaps the whole directory: old files are gone.
        let partition = format!("{}/community_id=c/as_of=2026-01-01", metrics_path("kpis"));
        lake.write(&format!("{partition}/stale.parquet"), b"old")
            .unwrap();
        let new = lake.staging_dir().join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join("part-0.parquet"), "new").unwrap();
        lake.replace_dirs(&[(new, partition.clone())]).unwrap();
        assert_eq!(
            lake.list_files(&partition).unwrap(),
            [format!("{partition}/part-0.parquet")]
        );
        assert!(lake.exists(&format!("{partition}/part-0.parquet")).unwrap());
        lake.remove_all("metrics").unwrap();
        assert!(!lake.exists(&format!("{partition}/part-0.parquet")).unwrap());
        assert_eq!(
            lake.display("events"),
            dir.path()
                .canonicalize()
                .unwrap()
                .join("events")
                .display()
                .to_string()
        );
    }

    #[test]
    fn clearing_staging_keeps_live_writers_files() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let live = lake.stage("report").unwrap();
        std::fs::write(live.path().join("report.html"), "x").unwrap();
        // What a dead writer (or an earlier version) left.
        let dead = lake.staging_dir().join("import-1-2");
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::write(lake.staging_dir().join("import-1-2.lock"), "").unwrap();
        let legacy = lake.staging_dir().join("run-3-4");
        std::fs::create_dir_all(&legacy).unwrap();
        lake.clear_staging().unwrap();
        assert!(live.path().join("report.html").exists());
        assert!(!dead.exists() && !legacy.exists());
        assert!(!lake.staging_dir().join("import-1-2.lock").exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(lake.staging_dir()).unwrap().count(), 0);
    }

    #[test]
    fn unknown_schemes_and_missing_buckets_are_refused() {
        let e = Lake::open("ftp://host/lake").unwrap_err().to_string();
        assert!(e.contains("unsupported scheme `ftp://`"), "{e}");
        // An S3 lake names its URL in what it shows, and maps lake paths below its prefix.
        let lake = Lake::open("s3://bucket/some/prefix").unwrap();
        assert_eq!(lake.display("events"), "s3://bucket/some/prefix/events");
        assert_eq!(
            lake.table_url("events").unwrap(),
            "s3://bucket/some/prefix/events/"
        );
        assert!(lake.local_root().is_none());
    }
}
