//! Rewriting event partitions whole: compaction (`pulse compact`, and automatically after
//! spool compaction and a run's intake), erasure and text retention ([`crate::privacy`]) all go
//! through [`rewrite_partitions`].
//!
//! **Why compaction.** Every import and every spool compaction adds one file per (community,
//! UTC day) partition it touches, so a lake fed every 15 minutes gains up to 96 files a day in
//! today's partition. [`compact`] merges the files of a partition into one, sorted like an
//! import writes them (member, time, event id; declared as the file's sorting columns; row
//! groups of at most 512 Ki rows), named by a hash of its bytes. The rows are the same
//! multiset, so dedupe (which reads every stored key), forgotten members (already removed,
//! and kept out by every writer) and metric values are unchanged; rollups fingerprint the
//! file names of a month (`models::rollups`), so each compacted month is recomputed once.
//!
//! **Writers.** Compaction holds the lake lock (`<lake>/.pulse.lock`) from listing to the last
//! swap, like an import from loading keys to publishing: an import started meanwhile waits for
//! it, and compaction waits for a running import, so no file is added to a partition between
//! the moment it is read and the moment it is replaced. `pulse compact` also takes the run
//! lock, so it never overlaps a run or an erasure.
//!
//! **Readers, local lake.** A partition is replaced by staging its new directory and swapping
//! it with the old one in one `renameat2(RENAME_EXCHANGE)` ([`super::replace_dir`]): a listing
//! sees the old set of files or the new, never both and never neither. The old directory is
//! kept (under `_staging/`) for a minute, not removed at once: a reader still reading its
//! entries through an open handle would otherwise see them vanish and miss files without an
//! error. A reader that listed the old files and opens one after the swap gets "not found"
//! rather than a wrong answer;
//! pulse's own queries run again on that error ([`crate::engine::query`]), other readers
//! (DuckDB, Polars) see an error and can retry.
//!
//! **Readers, object-store lake.** There is no rename and no multi-object commit, so the swap
//! is made with names ([`super::remote::Remote::replace_dirs`]): first a marker object
//! `_replaced=<old>=<new>` per replaced file, beside it (hidden from globs and Spark by its
//! `_`), then the new file is uploaded, then the old files are deleted. Pulse's readers (the
//! query engine's store, and every lake listing) hide an old file while markers name it and
//! every new file they name is listed, so they see the old set or the new, never both; a file
//! read after its deletion is "not found" and the query runs again, as on a local lake. Other
//! readers listing the prefix between the upload and the deletes (one batch of requests) can
//! see both for that moment, as for rollup partitions. Markers outlive the deletes by
//! [`super::remote::MARKER_GRACE`], so a listing still in flight keeps hiding what it should;
//! the next replacement or compaction removes them, and finishes a replacement a crash
//! interrupted (new file uploaded, old ones still there: the markers already hide them).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use serde::Serialize;

use super::Lake;
use crate::error::{IoContext, Result};

/// What [`rewrite_partitions`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Nothing: count what would change.
    DryRun,
    /// The partitions whose counts are not both zero.
    Changed,
    /// Every partition asked for, as one file (compaction).
    All,
}

/// Rewrite the event partitions of `community` that `wanted(partition directory, number of
/// files)` accepts, through `change`, which returns the new batch and two counts (what it
/// removed and what it cleared). Each rewritten partition becomes one file, sorted like an
/// import writes it and named by a hash of its bytes, swapped in whole ([`Lake::replace_dirs`]),
/// so readers see the old or the new partition. Returns (partitions rewritten, Σ first count,
/// Σ second count). The caller holds what keeps writers out (the lake or run lock).
pub fn rewrite_partitions(
    lake: &Lake,
    community: &str,
    wanted: impl Fn(&str, usize) -> bool,
    mode: Rewrite,
    change: impl Fn(&RecordBatch) -> Result<(RecordBatch, u64, u64)>,
) -> Result<(usize, u64, u64)> {
    let root = format!("{}/community_id={community}", super::EVENTS);
    let mut by_dir: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in lake.list_files(&root)? {
        if let Some((dir, _)) = file.rsplit_once('/') {
            if file.ends_with(".parquet") {
                by_dir.entry(dir.to_string()).or_default().push(file);
            }
        }
    }
    let stage = lake.stage("rewrite")?;
    let (mut partitions, mut first, mut second) = (0, 0, 0);
    let schema = crate::event::file_schema();
    for (dir, files) in by_dir {
        if !wanted(&dir, files.len()) {
            continue;
        }
        let mut batches = Vec::new();
        let (mut dir_first, mut dir_second) = (0u64, 0u64);
        for bytes in lake.read_many(&files)? {
            for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()? {
                let (batch, a, b) = change(&batch?)?;
                dir_first += a;
                dir_second += b;
                batches.push(batch);
            }
        }
        let changed = dir_first > 0 || dir_second > 0;
        if !changed && mode != Rewrite::All {
            continue;
        }
        partitions += 1;
        first += dir_first;
        second += dir_second;
        if mode == Rewrite::DryRun {
            continue;
        }
        let all = concat_batches(&schema, &batches)?;
        drop(batches);
        let sorted = super::events::sort_events(&all)?;
        drop(all);
        let mut writer = ArrowWriter::try_new(
            Vec::new(),
            schema.clone(),
            Some(super::events::parquet_properties(
                super::events::WriterOptions::default().zstd_level,
            )),
        )?;
        writer.write(&sorted)?;
        let bytes = writer.into_inner()?;
        let staged = stage.path().join(format!("p{partitions}"));
        std::fs::create_dir_all(&staged).io_context(|| format!("creating {}", staged.display()))?;
        let name = format!("part-{:016x}.parquet", xxhash_rust::xxh3::xxh3_64(&bytes));
        std::fs::write(staged.join(&name), &bytes)
            .io_context(|| format!("writing {}", staged.display()))?;
        lake.replace_dirs(&[(staged, dir)])?;
    }
    if mode == Rewrite::Changed {
        // Erasure and retention: the replaced files hold what must go, now, even at the cost
        // of a reader listing one of these partitions at this instant missing its rows once.
        lake.remove_replaced(std::time::Duration::ZERO)?;
    }
    Ok((partitions, first, second))
}

/// Which partitions [`compact`] merges.
#[derive(Debug, Clone, Default)]
pub struct CompactOptions {
    /// Only this community (default: every community of the lake).
    pub community: Option<String>,
    /// Only partitions of UTC days before this date.
    pub before: Option<NaiveDate>,
    /// Only partitions with more than this many files (at least 1: a partition of one file is
    /// compacted already).
    pub above_files: usize,
}

/// What [`compact`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CompactStats {
    /// Partitions merged into one file each.
    pub partitions: usize,
    /// Files they had.
    pub files_before: usize,
    /// Events they hold (unchanged by compaction).
    pub events: u64,
}

/// Merge the files of every partition `options` selects into one file per partition (see the
/// module docs), holding the lake lock.
pub fn compact(lake: &Lake, options: &CompactOptions) -> Result<CompactStats> {
    let _lock = lake.lock()?;
    lake.clear_staging()?;
    lake.tidy_replacements(super::EVENTS)?;
    let above = options.above_files.max(1);
    let before = options.before;
    let mut stats = CompactStats::default();
    let communities = match &options.community {
        Some(c) => vec![c.clone()],
        None => lake.communities()?,
    };
    let files_before = std::cell::Cell::new(0);
    for community in communities {
        let wanted = |dir: &str, files: usize| {
            let day = dir
                .rsplit_once("event_date=")
                .and_then(|(_, d)| d.parse::<NaiveDate>().ok());
            let take = files > above && day.is_some_and(|d| before.is_none_or(|b| d < b));
            if take {
                files_before.set(files_before.get() + files);
            }
            take
        };
        let (partitions, events, _) =
            rewrite_partitions(lake, &community, wanted, Rewrite::All, |batch| {
                Ok((batch.clone(), batch.num_rows() as u64, 0))
            })?;
        stats.partitions += partitions;
        stats.events += events;
    }
    stats.files_before = files_before.get();
    Ok(stats)
}
