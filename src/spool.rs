//! The spool: where webhook events wait, durable, between the 2xx and the lake.
//!
//! `<state_dir>/spool/segment-<n>.log` files of records `[len: u32 LE][xxh3-64 of payload: u64
//! LE][payload]`, each payload one canonical event as a JSON line. Writers hand batches to one
//! appender task, which writes every batch waiting, calls `fsync` once for all of them (group
//! commit) and only then acknowledges: a 2xx means the events are on disk. At 64 MiB a segment
//! is sealed and a new one begun (each new segment costs a directory fsync; batched intake at
//! full speed writes ~160 MB/s). Opening the spool scans the open segment and truncates a torn
//! tail (a record cut short or with a bad checksum: it was never acknowledged).
//!
//! A write or fsync that fails part-way (disk full, file-size limit, EIO) fails every batch of
//! its group (the HTTP server answers 503), and the appender cuts the segment back to its last
//! acknowledged length before it writes anything else — otherwise later batches would sit
//! behind a torn frame, where recovery stops reading. A segment that cannot be cut back is
//! sealed as it is (recovery reads its whole records up to the tear, all of them written before
//! the failure) and writing continues in a new one; until one of the two succeeds, every
//! batch fails.
//!
//! The spool's size is bounded by `ingest.spool_max_bytes`: [`Spool::append_within`] reserves
//! a batch's bytes before writing it (so concurrent requests cannot all pass one check and
//! overshoot together) and refuses what would not fit. The size is this process's count of
//! what it wrote and compacted; when a batch would not fit, the segments on disk are counted
//! again (at most once a second), since `pulse run` may have moved sealed segments into the
//! lake meanwhile.
//!
//! Compaction ([`Spool::compact`]) seals the open segment, imports the sealed ones into the lake
//! through the same path as `pulse import` (validation, quarantine, dedupe on (community_id,
//! source, event_id)), and deletes a segment only after the import published its Parquet
//! files. A crash between the two imports the segment again, and dedupe makes that harmless.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, IoContext, Result};

const SEGMENT_BYTES: u64 = 64 << 20;
const HEADER: usize = 12;

/// What the spool holds and how often it synced (each fsync's time goes to
/// [`crate::telemetry`]).
#[derive(Debug, Default)]
pub struct SpoolStats {
    pub bytes: AtomicU64,
    pub fsyncs: AtomicU64,
}

/// Records for the appender, the bytes reserved for them (see [`Spool::append_within`]), and
/// where to send the outcome.
type Batch = (
    Vec<Vec<u8>>,
    u64,
    oneshot::Sender<std::result::Result<(), String>>,
);

/// A handle to the spool's appender task.
#[derive(Clone)]
pub struct Spool {
    dir: PathBuf,
    tx: mpsc::Sender<Batch>,
    pub stats: Arc<SpoolStats>,
    reservations: Arc<Mutex<Reservations>>,
}

/// Bytes promised to batches on their way to the appender.
#[derive(Default)]
struct Reservations {
    pending: u64,
    /// When the segments on disk were last counted.
    counted: Option<std::time::Instant>,
}

/// Why [`Spool::append_within`] did not store a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// The spool would grow beyond its limit.
    Full,
    /// The write failed (nothing of the batch is acknowledged).
    Failed(String),
}

/// Bytes `records` take in a segment.
pub fn framed_len(records: &[Vec<u8>]) -> u64 {
    records.iter().map(|r| (HEADER + r.len()) as u64).sum()
}

fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).io_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .io_context(|| format!("listing {}", dir.display()))?
            .path();
        let n = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("segment-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            found.push((n, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Read the whole records of a segment; returns them and the length of the valid prefix.
pub fn read_segment(path: &Path) -> Result<(Vec<Vec<u8>>, u64)> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .io_context(|| format!("reading {}", path.display()))?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while at + HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let sum = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap());
        let end = at + HEADER + len;
        if end > bytes.len() || xxhash_rust::xxh3::xxh3_64(&bytes[at + HEADER..end]) != sum {
            break;
        }
        records.push(bytes[at + HEADER..end].to_vec());
        at = end;
    }
    Ok((records, at as u64))
}

fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .io_context(|| format!("syncing {}", dir.display()))
}

/// The open segment the appender writes to.
struct Appender {
    /// The OS lock on `writer.lock`: only one process appends, and others know one does.
    _writer: File,
    dir: PathBuf,
    number: u64,
    file: File,
    /// Bytes of whole, durable records in `file`: everything acknowledged, nothing after.
    len: u64,
    /// A write failed and `file` may hold bytes past `len` that are not cut off yet.
    torn: bool,
    /// A new segment's directory entry is not synced yet.
    dir_unsynced: bool,
}

impl Appender {
    fn open(dir: &Path) -> Result<Appender> {
        std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
        let writer = crate::lake::lock_file(&dir.join("writer.lock"))?;
        Appender::open_locked(dir, writer)
    }

    /// Open (recovering a torn tail) with the writer lock already held.
    fn open_locked(dir: &Path, writer: File) -> Result<Appender> {
        let existing = segments(dir)?;
        let (number, path) = match existing.last() {
            Some((n, p)) => (*n, p.clone()),
            None => (1, dir.join("segment-1.log")),
        };
        let len = if path.exists() {
            let (_, valid) = read_segment(&path)?;
            let on_disk = std::fs::metadata(&path)
                .io_context(|| format!("reading {}", path.display()))?
                .len();
            if valid < on_disk {
                tracing::warn!(segment = %path.display(), valid, on_disk, "truncating a torn tail (never acknowledged)");
                let f = File::options()
                    .write(true)
                    .open(&path)
                    .io_context(|| format!("opening {}", path.display()))?;
                f.set_len(valid)
                    .and_then(|()| f.sync_all())
                    .io_context(|| format!("truncating {}", path.display()))?;
            }
            valid
        } else {
            0
        };
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .io_context(|| format!("opening {}", path.display()))?;
        sync_dir(dir)?;
        Ok(Appender {
            _writer: writer,
            dir: dir.to_path_buf(),
            number,
            file,
            len,
            torn: false,
            dir_unsynced: false,
        })
    }

    /// Start a new segment unless the open one is empty; the current one is sealed (never
    /// written again).
    fn rotate(&mut self) -> Result<()> {
        if self.len == 0 && !self.torn {
            return Ok(());
        }
        self.next_segment()
    }

    fn next_segment(&mut self) -> Result<()> {
        let path = self.dir.join(format!("segment-{}.log", self.number + 1));
        self.file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .io_context(|| format!("creating {}", path.display()))?;
        self.number += 1;
        self.len = 0;
        self.torn = false;
        self.dir_unsynced = true;
        sync_dir(&self.dir)?;
        self.dir_unsynced = false;
        Ok(())
    }

    fn path(&self) -> PathBuf {
        self.dir.join(format!("segment-{}.log", self.number))
    }

    /// Append `buf` (whole frames) and make it durable. When that fails, nothing of `buf` may
    /// stay where a later write would follow it: see [`Appender::repair`].
    fn write(&mut self, buf: &[u8]) -> Result<()> {
        if self.torn {
            self.repair()?;
        }
        if self.dir_unsynced {
            sync_dir(&self.dir)?;
            self.dir_unsynced = false;
        }
        self.torn = true;
        let written = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.torn = false;
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // If this fails too, `torn` stays set and the next write tries again first.
                if let Err(again) = self.repair() {
                    tracing::error!("the spool cannot be repaired yet: {again}");
                }
                Err(e).io_context(|| format!("writing {}", self.path().display()))
            }
        }
    }

    /// After a failed write: cut the segment back to its acknowledged length, or, if that fails
    /// too, seal it as it is and continue in a new segment.
    fn repair(&mut self) -> Result<()> {
        let path = self.path();
        let cut = self
            .file
            .set_len(self.len)
            .and_then(|()| self.file.sync_all());
        match cut {
            Ok(()) => {
                tracing::warn!(segment = %path.display(), len = self.len, "cut a failed write back");
                self.torn = false;
                Ok(())
            }
            Err(e) => {
                tracing::error!(segment = %path.display(), "cannot cut a failed write back ({e}); sealing the segment");
                self.next_segment()
            }
        }
    }
}

/// Bytes in every segment of `dir`.
fn spool_bytes(dir: &Path) -> u64 {
    segments(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

impl Spool {
    /// Open (and recover) the spool in `dir` and start its appender task.
    pub fn open(dir: &Path) -> Result<Spool> {
        let mut appender = Appender::open(dir)?;
        let stats = Arc::new(SpoolStats::default());
        stats.bytes.store(spool_bytes(dir), Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel::<Batch>(1024);
        let task_stats = stats.clone();
        let reservations: Arc<Mutex<Reservations>> = Arc::default();
        let task_reservations = reservations.clone();
        std::thread::Builder::new()
            .name("pulse-spool".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    // Group commit: everything waiting now shares one write and one fsync.
                    let mut batches = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batches.push(more);
                    }
                    let (written, outcome) = append(&mut appender, &batches, &task_stats);
                    {
                        // The written bytes stop being reserved and start being counted at
                        // once: a batch counted twice for a moment would refuse another
                        // that fits.
                        let mut r = task_reservations.lock().expect("spool reservations");
                        task_stats.bytes.fetch_add(written, Ordering::Relaxed);
                        r.pending -= batches.iter().map(|(_, reserved, _)| reserved).sum::<u64>();
                    }
                    for (_, _, ack) in batches {
                        let _ = ack.send(outcome.clone());
                    }
                }
            })
            .map_err(|e| Error::Io {
                context: "starting the spool writer".into(),
                source: e,
            })?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            tx,
            stats,
            reservations,
        })
    }

    /// Count the bytes of the segments on disk again (another process may have compacted).
    pub fn recount(&self) {
        self.stats
            .bytes
            .store(spool_bytes(&self.dir), Ordering::Relaxed);
    }

    /// Reserve `size` bytes if the spool stays within `max`; see the module docs.
    fn reserve(&self, size: u64, max: u64) -> bool {
        let mut r = self.reservations.lock().expect("spool reservations");
        let fits = |pending: u64| self.bytes().saturating_add(pending).saturating_add(size) <= max;
        if !fits(r.pending) {
            let stale = r
                .counted
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
            if !stale {
                return false;
            }
            self.recount();
            r.counted = Some(std::time::Instant::now());
            if !fits(r.pending) {
                return false;
            }
        }
        r.pending += size;
        true
    }

    fn release(&self, size: u64) {
        let mut r = self.reservations.lock().expect("spool reservations");
        r.pending -= size;
    }

    /// Whether a batch of `size` bytes would fit within `max` now (nothing reserved).
    pub fn has_room(&self, size: u64, max: u64) -> bool {
        let room = self.reserve(size, max);
        if room {
            self.release(size);
        }
        room
    }

    /// [`Spool::append`], unless the spool would grow beyond `max` bytes.
    pub async fn append_within(
        &self,
        records: Vec<Vec<u8>>,
        max: u64,
    ) -> std::result::Result<(), AppendError> {
        let size = framed_len(&records);
        if !self.reserve(size, max) {
            return Err(AppendError::Full);
        }
        // The appender releases the reservation when it counts the written bytes.
        self.send(records, size).await.map_err(AppendError::Failed)
    }

    /// Append `records` (one JSON event each); returns once they are on disk.
    pub async fn append(&self, records: Vec<Vec<u8>>) -> std::result::Result<(), String> {
        self.send(records, 0).await
    }

    async fn send(&self, records: Vec<Vec<u8>>, reserved: u64) -> std::result::Result<(), String> {
        let (ack, done) = oneshot::channel();
        if self.tx.send((records, reserved, ack)).await.is_err() {
            self.release(reserved);
            return Err("the spool writer stopped".to_string());
        }
        done.await
            .map_err(|_| "the spool writer stopped".to_string())?
    }

    pub fn bytes(&self) -> u64 {
        self.stats.bytes.load(Ordering::Relaxed)
    }

    /// Seal the open segment (through the appender, so no write is in flight), import every
    /// sealed segment into `lake` and delete them. Returns the import statistics.
    pub async fn compact(
        &self,
        lake: &crate::lake::Lake,
    ) -> Result<crate::lake::events::ImportStats> {
        let started = std::time::Instant::now();
        let compacted = async {
            // An empty batch with the rotate marker: the appender seals the open segment.
            self.append(vec![Vec::new()]).await.map_err(Error::Spool)?;
            let dir = self.dir.clone();
            let lake = lake.clone();
            let stats = self.stats.clone();
            tokio::task::spawn_blocking(move || compact_sealed(&dir, &lake, Some(&stats), false))
                .await
                .map_err(|e| Error::Spool(format!("compaction task: {e}")))?
        }
        .await;
        crate::telemetry::get().compaction(compacted.is_ok(), started.elapsed().as_secs_f64());
        compacted
    }
}

/// Write batches to the open segment, fsync once. An empty record means "seal the segment".
/// Returns the bytes made durable (the caller counts them) and the outcome for the batches.
fn append(
    appender: &mut Appender,
    batches: &[Batch],
    stats: &SpoolStats,
) -> (u64, std::result::Result<(), String>) {
    let mut buf = Vec::new();
    let mut rotate = false;
    for (records, _, _) in batches {
        for r in records {
            if r.is_empty() {
                rotate = true;
            } else {
                frame(r, &mut buf);
            }
        }
    }
    let started = std::time::Instant::now();
    if !buf.is_empty() {
        if let Err(e) = appender.write(&buf) {
            return (0, Err(format!("writing the spool: {e}")));
        }
        stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::get().fsync(started.elapsed().as_secs_f64());
    }
    let written = buf.len() as u64;
    if rotate || appender.len >= SEGMENT_BYTES {
        if let Err(e) = appender.rotate() {
            return (written, Err(e.to_string()));
        }
    }
    (written, Ok(()))
}

/// `pulse run`'s spool stage: import what no live writer will touch again — the sealed
/// segments of a `pulse serve` running beside it, or every segment when no `pulse serve` holds
/// the spool (a stopped or crashed one).
pub fn compact_from_outside(
    dir: &Path,
    lake: &crate::lake::Lake,
) -> Result<crate::lake::events::ImportStats> {
    if !dir.exists() {
        return Ok(Default::default());
    }
    let lock = dir.join("writer.lock");
    let writer = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .io_context(|| format!("opening {}", lock.display()))?;
    if writer.try_lock().is_err() {
        return compact_sealed(dir, lake, None, false);
    }
    // No live writer: recover a torn tail it may have left, and hold its lock while importing,
    // so a `pulse serve` starting meanwhile waits instead of appending to a segment being moved.
    let held = Appender::open_locked(dir, writer)?;
    let result = compact_sealed(dir, lake, None, true);
    drop(held);
    result
}

/// Import the sealed segments (all but the newest, or all with `include_open`) of `dir` into
/// `lake`, then delete them.
fn compact_sealed(
    dir: &Path,
    lake: &crate::lake::Lake,
    stats: Option<&SpoolStats>,
    include_open: bool,
) -> Result<crate::lake::events::ImportStats> {
    let all = segments(dir)?;
    let keep = if include_open { 0 } else { 1 };
    let sealed: Vec<&(u64, PathBuf)> = all.iter().take(all.len().saturating_sub(keep)).collect();
    if sealed.is_empty() {
        return Ok(Default::default());
    }
    // The records as one NDJSON file, imported like any other input.
    let staged = dir.join(format!("compact-{}.ndjson", crate::lake::unique_suffix()));
    {
        let mut out = std::io::BufWriter::new(
            File::create(&staged).io_context(|| format!("creating {}", staged.display()))?,
        );
        for (_, path) in &sealed {
            for record in read_segment(path)?.0 {
                out.write_all(&record)
                    .and_then(|()| out.write_all(b"\n"))
                    .io_context(|| format!("writing {}", staged.display()))?;
            }
        }
        out.flush()
            .io_context(|| format!("writing {}", staged.display()))?;
    }
    let result = crate::ingest::files::import_files(
        lake,
        std::slice::from_ref(&staged),
        crate::ingest::files::InputFormat::Ndjson,
        crate::lake::events::WriterOptions::default(),
    );
    let _ = std::fs::remove_file(&staged);
    let total = result?;
    // The import published (and synced) its Parquet files: the segments may go.
    for (_, path) in sealed {
        std::fs::remove_file(path).io_context(|| format!("removing {}", path.display()))?;
    }
    if let Some(stats) = stats {
        // Counted, not subtracted: a count taken meanwhile (see `Spool::reserve`) already saw
        // some of the segments go.
        stats.bytes.store(spool_bytes(dir), Ordering::Relaxed);
    }
    sync_dir(dir)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_records_survive_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let writes: Vec<_> = (0..50)
            .map(|i| {
                let spool = spool.clone();
                tokio::spawn(async move {
                    spool
                        .append(vec![format!("{{\"n\":{i}}}").into_bytes()])
                        .await
                })
            })
            .collect();
        for w in writes {
            w.await.unwrap().unwrap();
        }
        // Fewer fsyncs than requests: concurrent requests shared them.
        assert!(spool.stats.fsyncs.load(Ordering::Relaxed) <= 50);
        drop(spool);
        // A crash mid-write leaves half a record.
        let path = dir.path().join("segment-1.log");
        let mut f = File::options().append(true).open(&path).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let _reopened = Spool::open(dir.path()).unwrap();
        let (records, valid) = read_segment(&path).unwrap();
        assert_eq!(records.len(), 50);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), valid);
    }

    /// Set this process's file-size limit (`ulimit -f`), in bytes.
    fn limit_file_size(bytes: libc::rlim_t) {
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain system calls with valid arguments.
        unsafe {
            // Ignored, SIGXFSZ does not kill the process: the write fails with EFBIG.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        }
    }

    const FSIZE_CHILD: &str = "PULSE_TEST_SPOOL_FSIZE_DIR";

    /// A real file-size limit (not a mock) makes writes fail part-way through a frame. Every
    /// record acknowledged — before the limit, between failures, and after the limit is raised
    /// again — must survive recovery; failed appends must report their failure. The limit
    /// applies to a whole process, so the body runs in a child: this test binary, this test only.
    #[test]
    fn acknowledged_records_survive_a_file_size_limit() {
        if let Ok(dir) = std::env::var(FSIZE_CHILD) {
            return file_size_limit_child(Path::new(&dir));
        }
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "spool::tests::acknowledged_records_survive_a_file_size_limit",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(FSIZE_CHILD, dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the child ran no test: {text}");
    }

    fn file_size_limit_child(dir: &Path) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        limit_file_size(16 << 10);
        let spool = Spool::open(dir).unwrap();
        let mut acked = Vec::new();
        let mut failed = 0;
        let mut append = |spool: &Spool, i: usize| {
            // 1 to 7 records of ~130 bytes: a batch rarely fits exactly.
            let batch: Vec<Vec<u8>> = (0..i % 7 + 1)
                .map(|j| format!(r#"{{"n":"{i}-{j}","pad":"{}"}}"#, "x".repeat(110)).into_bytes())
                .collect();
            let outcome = rt.block_on(spool.append(batch.clone()));
            if outcome.is_ok() {
                acked.extend(batch);
            }
            outcome
        };
        for i in 0..300 {
            if append(&spool, i).is_err() {
                failed += 1;
            }
        }
        assert!(failed > 0, "the limit was never reached");
        // Space returns: every append is acknowledged again.
        limit_file_size(libc::RLIM_INFINITY);
        for i in 300..350 {
            append(&spool, i).unwrap();
        }
        drop(spool);
        // Recovery (as after a crash or restart), then every record in the spool.
        let reopened = Spool::open(dir).unwrap();
        let stored: Vec<Vec<u8>> = segments(dir)
            .unwrap()
            .iter()
            .flat_map(|(_, path)| read_segment(path).unwrap().0)
            .collect();
        drop(reopened);
        let lost = acked.iter().filter(|r| !stored.contains(r)).count();
        assert_eq!(
            lost,
            0,
            "{lost} of {} acknowledged records lost ({failed} appends failed)",
            acked.len()
        );
        assert_eq!(stored, acked, "only acknowledged records, in order, once");
    }

    /// `pulse run` beside `pulse serve` deletes the sealed segments it moved into the lake: the
    /// spool counts them again instead of answering "full" for ever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_spool_counts_again_after_an_external_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let record = vec![b'x'; 64 << 10];
        while segments(dir.path()).unwrap().len() < 2 {
            spool.append(vec![record.clone(); 16]).await.unwrap();
        }
        let max = 2 << 20;
        assert_eq!(
            spool.append_within(vec![record.clone()], max).await,
            Err(AppendError::Full)
        );
        // What compact_from_outside does once the import is published.
        std::fs::remove_file(dir.path().join("segment-1.log")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        spool
            .append_within(vec![record.clone()], max)
            .await
            .unwrap();
        assert!(spool.bytes() < max);
    }

    /// Concurrent batches reserve their bytes: together they never overshoot the limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_stay_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let max = 4096;
        let writes: Vec<_> = (0..50)
            .map(|_| {
                let spool = spool.clone();
                tokio::spawn(async move { spool.append_within(vec![vec![b'y'; 500]], max).await })
            })
            .collect();
        let mut accepted = 0;
        for w in writes {
            if w.await.unwrap().is_ok() {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 4096 / (500 + HEADER));
        assert!(spool_bytes(dir.path()) <= max);
    }

    #[test]
    fn recovery_keeps_exactly_a_prefix_of_whole_records_whatever_the_damage() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment-1.log");
        for _ in 0..500 {
            let records: Vec<Vec<u8>> = (0..rng.gen_range(0..20))
                .map(|_| (0..rng.gen_range(1..200)).map(|_| rng.gen()).collect())
                .collect();
            let mut bytes = Vec::new();
            for r in &records {
                frame(r, &mut bytes);
            }
            // Cut anywhere, and sometimes flip a byte or append garbage.
            bytes.truncate(rng.gen_range(0..=bytes.len()));
            if !bytes.is_empty() && rng.gen_bool(0.3) {
                let i = rng.gen_range(0..bytes.len());
                bytes[i] ^= 0xff;
            }
            if rng.gen_bool(0.2) {
                bytes.extend((0..rng.gen_range(1..30)).map(|_| rng.gen::<u8>()));
            }
            std::fs::write(&path, &bytes).unwrap();
            let (read, valid) = read_segment(&path).unwrap();
            assert!(valid as usize <= bytes.len());
            assert!(read.len() <= records.len());
            assert_eq!(
                read[..],
                records[..read.len()],
                "a prefix of what was written"
            );
        }
    }
}
