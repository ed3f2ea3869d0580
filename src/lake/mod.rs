//! The Parquet lake (SPEC §5): where each table lives, how files appear atomically, and the
//! lock that serializes writers.
//!
//! ```text
//! <lake>/events/community_id=<c>/event_date=<YYYY-MM-DD UTC>/part-<hash>.parquet
//! <lake>/quarantine/<YYYY-MM-DD>/<hash>.ndjson
//! <lake>/metrics/<table>/community_id=<c>/as_of=<YYYY-MM-DD>/part-0.parquet
//! <lake>/reports/<c>/<as_of>/report.html
//! ```
//! Writers stage files under `<lake>/_staging/` (invisible to `events/**/*.parquet` globs),
//! make them durable with one filesystem sync per batch, then rename them into place.
//! A writer holds `<lake>/.pulse.lock` (an OS file lock, released by the kernel if the process
//! dies), so a killed writer never leaves the lake locked.

pub mod events;

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// A lake on the local filesystem.
#[derive(Debug, Clone)]
pub struct Lake {
    root: PathBuf,
}

/// Exclusive ownership of the lake for writing; dropped = released.
#[derive(Debug)]
pub struct LakeLock {
    _file: File,
}

impl Lake {
    /// Open (and create if needed) the lake at `location`: a path or a `file://` URL.
    pub fn open(location: &str) -> Result<Lake> {
        let path = match location.strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None if location.contains("://") => {
                return Err(Error::Usage(format!(
                    "lake `{location}`: object-store lakes are not supported yet; use a local path"
                )))
            }
            None => PathBuf::from(location),
        };
        std::fs::create_dir_all(path.join("events"))
            .io_context(|| format!("creating the lake at {}", path.display()))?;
        let root = path
            .canonicalize()
            .io_context(|| format!("opening the lake at {}", path.display()))?;
        Ok(Lake { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn events_dir(&self) -> PathBuf {
        self.root.join("events")
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    pub fn metrics_dir(&self, table: &str) -> PathBuf {
        self.root.join("metrics").join(table)
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

    /// Generated reports: `<lake>/reports/<community>/<as_of>/` (SPEC §5).
    pub fn report_dir(&self, community: &str, as_of: chrono::NaiveDate) -> PathBuf {
        self.root
            .join("reports")
            .join(community)
            .join(as_of.to_string())
    }

    /// Remove what an interrupted writer left in staging. Call with the lock held.
    pub fn clear_staging(&self) -> Result<()> {
        let dir = self.staging_dir();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).io_context(|| format!("clearing {}", dir.display())),
        }
    }

    /// Make every staged file durable with one sync of the filesystem (instead of one fsync
    /// per file), then rename each `(staged, final)` pair into place and make the renames
    /// durable too. Readers see each file whole or not at all.
    pub fn publish(&self, moves: &[(PathBuf, PathBuf)]) -> Result<()> {
        if moves.is_empty() {
            return Ok(());
        }
        sync_all(&self.root, moves.iter().map(|(staged, _)| staged.as_path()))?;
        // Failpoint for the crash-consistency test: die after this many renames.
        let abort_after: Option<usize> = std::env::var("PULSE_TEST_ABORT_AFTER_RENAMES")
            .ok()
            .and_then(|v| v.parse().ok());
        for (done, (staged, target)) in moves.iter().enumerate() {
            if abort_after == Some(done) {
                std::process::abort();
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .io_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::rename(staged, target)
                .io_context(|| format!("moving {} into place", target.display()))?;
        }
        sync_all(
            &self.root,
            moves.iter().filter_map(|(_, target)| target.parent()),
        )
    }

    /// Derived per-partition rollups (see `models::rollups`).
    pub fn rollups_dir(&self, table: &str) -> PathBuf {
        self.root.join("rollups").join(table)
    }

    /// Replace each directory `target` with its staged directory `staged`, atomically per
    /// directory (used for metric and rollup partitions: recomputing one replaces it whole).
    /// One filesystem sync covers all staged files before the swaps, one more the swaps.
    pub fn replace_dirs(&self, swaps: &[(PathBuf, PathBuf)]) -> Result<()> {
        if swaps.is_empty() {
            return Ok(());
        }
        sync_all(&self.root, swaps.iter().map(|(staged, _)| staged.as_path()))?;
        for (staged, target) in swaps {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .io_context(|| format!("creating {}", parent.display()))?;
            }
            swap_dir(staged, target)?;
        }
        sync_all(
            &self.root,
            swaps.iter().filter_map(|(_, target)| target.parent()),
        )
    }
}

/// Put directory `staged` at `target`. When `target` exists, Linux swaps the two in one step
/// (`renameat2(RENAME_EXCHANGE)`), so readers see the old or the new directory, never none;
/// elsewhere (or on filesystems without it) the old one is moved aside first.
fn swap_dir(staged: &Path, target: &Path) -> Result<()> {
    let context = || format!("moving {} into place", target.display());
    if !target.exists() {
        return std::fs::rename(staged, target).io_context(context);
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
            // `staged` now holds the old directory.
            return std::fs::remove_dir_all(staged)
                .io_context(|| format!("removing the old {}", target.display()));
        }
    }
    let aside = target.with_file_name(format!(
        ".{}.old-{}",
        target.file_name().and_then(|n| n.to_str()).unwrap_or("dir"),
        unique_suffix()
    ));
    std::fs::rename(target, &aside).io_context(context)?;
    std::fs::rename(staged, target).io_context(context)?;
    std::fs::remove_dir_all(&aside).io_context(|| format!("removing {}", aside.display()))
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
