//! Personal data (SPEC §8): what pulse keeps about people apart from the lake, and how it lets
//! go of it. [`directory`] holds display names (`<state_dir>/members.sqlite`); [`forgotten`]
//! records erased members as keyed hashes in the lake so no writer brings them back;
//! [`forget`] erases a member from everything pulse keeps; [`retention`] nulls old text.

pub mod directory;
pub mod forget;
pub mod forgotten;
pub mod retention;

pub use directory::Directory;
pub use forgotten::Forgotten;

use std::collections::BTreeMap;

use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{IoContext, Result};
use crate::lake::Lake;

/// Rewrite event partitions of `community` (those whose `event_date=…` directory `wanted`
/// accepts) through `change`, which returns the new batch and two counts (what it removed and
/// what it cleared). A partition whose counts are both zero is left alone; a changed one is
/// written as one content-named file and swapped in whole ([`Lake::replace_dirs`]), so readers
/// see the old or the new partition. Returns (partitions rewritten, Σ first count, Σ second).
pub fn rewrite_event_partitions(
    lake: &Lake,
    community: &str,
    wanted: impl Fn(&str) -> bool,
    dry_run: bool,
    change: impl Fn(&RecordBatch) -> Result<(RecordBatch, u64, u64)>,
) -> Result<(usize, u64, u64)> {
    let root = format!("{}/community_id={community}", crate::lake::EVENTS);
    let mut by_dir: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in lake.list_files(&root)? {
        if let Some((dir, _)) = file.rsplit_once('/') {
            if file.ends_with(".parquet") && wanted(dir) {
                by_dir.entry(dir.to_string()).or_default().push(file);
            }
        }
    }
    let stage = lake.stage("rewrite")?;
    let (mut partitions, mut first, mut second) = (0, 0, 0);
    let schema = crate::event::file_schema();
    for (dir, files) in by_dir {
        let mut batches = Vec::new();
        let (mut dir_first, mut dir_second) = (0u64, 0u64);
        for bytes in lake.read_many(&files)? {
            let reader =
                datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    bytes,
                )?
                .build()?;
            for batch in reader {
                let (batch, a, b) = change(&batch?)?;
                dir_first += a;
                dir_second += b;
                batches.push(batch);
            }
        }
        if dir_first == 0 && dir_second == 0 {
            continue;
        }
        partitions += 1;
        first += dir_first;
        second += dir_second;
        if dry_run {
            continue;
        }
        let bytes = crate::lake::parquet::parquet_bytes(&schema, &batches)?;
        let staged = stage.path().join(format!("p{partitions}"));
        std::fs::create_dir_all(&staged).io_context(|| format!("creating {}", staged.display()))?;
        let name = format!("part-{:016x}.parquet", xxhash_rust::xxh3::xxh3_64(&bytes));
        std::fs::write(staged.join(&name), &bytes)
            .io_context(|| format!("writing {}", staged.display()))?;
        lake.replace_dirs(&[(staged, dir)])?;
    }
    Ok((partitions, first, second))
}
