//! Dedupe keys: the map of this import's keys, and the scan that marks those the lake already
//! holds (see the parent module for the memory model).

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

use datafusion::arrow::array::StringArray;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::file::reader::ChunkReader;
use rayon::prelude::*;

use super::column;
use crate::error::{IoContext, Result};
use crate::event::dedupe_key;
use crate::lake::Lake;

/// A dedupe key: the 128-bit hash of `(community_id, source, event_id)`, kept as two words so
/// a map entry with its winning sequence number takes 24 bytes (a `u128` key would align it to
/// 32).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Key(pub(super) u64, pub(super) u64);

impl From<u128> for Key {
    fn from(k: u128) -> Key {
        Key(k as u64, (k >> 64) as u64)
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// The keys are hashes already; hashing them again would only cost time.
#[derive(Default, Clone, Copy)]
pub(super) struct KeyHasher(u64);
impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only keys are hashed")
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = k;
    }
}

/// Key of this import → the sequence number of the copy that wins so far (IN_LAKE once the
/// key was found in the lake at commit).
pub(super) type KeyMap = HashMap<Key, u32, std::hash::BuildHasherDefault<KeyHasher>>;

/// Marks keys that are already in the lake: they always win, so no row of this import does.
const IN_LAKE: u32 = u32::MAX;

/// Sequence numbers of buffered rows that lost: to a later copy received earlier, or to the
/// lake. A bit per event of the import (1.25 MiB for 10M), so the commit drops losers without
/// looking each row's key up in the [`KeyMap`] again — and skips the check entirely when
/// nothing lost.
#[derive(Default)]
pub(super) struct Losers {
    bits: Vec<u64>,
    count: u64,
}

impl Losers {
    pub(super) fn insert(&mut self, seq: u32) {
        let (word, bit) = (seq as usize / 64, seq % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & (1 << bit) == 0 {
            self.bits[word] |= 1 << bit;
            self.count += 1;
        }
    }

    pub(super) fn contains(&self, seq: u32) -> bool {
        self.bits
            .get(seq as usize / 64)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// What [`mark_stored`] saw: keys read from the lake, and keys of this import among them.
pub(super) struct StoredScan {
    pub(super) lake_keys: u64,
    pub(super) stored: u64,
}

/// Read `(community_id, source, event_id)` of every event file in the lake, in parallel, a few
/// files at a time, and mark each key of this import found there as [`IN_LAKE`] (its buffered
/// winner joins `losers`). Only those files' bytes and keys are held besides the import's own
/// map.
pub(super) fn mark_stored(
    lake: &Lake,
    winners: &mut KeyMap,
    losers: &mut Losers,
) -> Result<StoredScan> {
    let mut scan = StoredScan {
        lake_keys: 0,
        stored: 0,
    };
    if winners.is_empty() {
        return Ok(scan);
    }
    let files: Vec<String> = lake
        .list_files(crate::lake::EVENTS)?
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .collect();
    for chunk in files.chunks(64) {
        // Each file's keys are probed on the core that read them; only the hits come back.
        let probe = |keys: Vec<Key>| -> (u64, Vec<Key>) {
            let n = keys.len() as u64;
            (
                n,
                keys.into_iter()
                    .filter(|k| winners.contains_key(k))
                    .collect(),
            )
        };
        // A local file is read in place (only the two key columns' pages); an object is fetched.
        let found: Vec<(u64, Vec<Key>)> = match lake.local_root() {
            Some(root) => chunk
                .par_iter()
                .map(|name| {
                    let path = root.join(name);
                    let community = file_community(name, &path.display().to_string())?;
                    let file =
                        File::open(&path).io_context(|| format!("opening {}", path.display()))?;
                    file_keys(file, community, &path.display().to_string()).map(probe)
                })
                .collect::<Result<_>>()?,
            None => lake
                .read_many(chunk)?
                .into_par_iter()
                .zip(chunk.par_iter())
                .map(|(bytes, name)| {
                    let shown = lake.display(name);
                    file_keys(bytes, file_community(name, &shown)?, &shown).map(probe)
                })
                .collect::<Result<_>>()?,
        };
        for (n, hits) in found {
            scan.lake_keys += n;
            for key in hits {
                let winner = winners
                    .get_mut(&key)
                    .expect("a hit is a key of this import");
                if *winner != IN_LAKE {
                    losers.insert(*winner);
                    *winner = IN_LAKE;
                    scan.stored += 1;
                }
            }
        }
    }
    Ok(scan)
}

/// The community of an events file: its `community_id=<c>` directory.
fn file_community<'a>(name: &'a str, shown: &str) -> Result<&'a str> {
    name.split('/')
        .find_map(|part| part.strip_prefix("community_id="))
        .ok_or_else(|| crate::error::Error::Input {
            path: PathBuf::from(shown),
            message: "an events file outside a `community_id=` partition".into(),
        })
}

fn file_keys<R: ChunkReader + 'static>(reader: R, community: &str, name: &str) -> Result<Vec<Key>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(reader)?;
    let schema = builder.parquet_schema();
    let wanted: Vec<usize> = ["source", "event_id"]
        .iter()
        .map(|n| {
            schema
                .columns()
                .iter()
                .position(|c| c.name() == *n)
                .ok_or_else(|| crate::error::Error::Input {
                    path: PathBuf::from(name),
                    message: format!("lake file has no `{n}` column"),
                })
        })
        .collect::<Result<_>>()?;
    let mask = ProjectionMask::leaves(schema, wanted);
    let mut keys = Vec::new();
    for batch in builder
        .with_projection(mask)
        .with_batch_size(65536)
        .build()?
    {
        let batch = batch?;
        let source = column::<StringArray>(&batch, "source");
        let event_id = column::<StringArray>(&batch, "event_id");
        keys.extend(
            (0..batch.num_rows())
                .map(|i| Key::from(dedupe_key(community, source.value(i), event_id.value(i)))),
        );
    }
    Ok(keys)
}
