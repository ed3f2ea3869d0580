//! Dedupe keys: the map of this import's keys, and the scan that marks those the lake already
//! holds (see the parent module for the memory model).

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

/// A dedupe key: the 128-bit hash of `(community_id, source, event_id)`, as two words.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Key(pub(super) u64, pub(super) u64);

impl From<u128> for Key {
    fn from(k: u128) -> Key {
        Key(k as u64, (k >> 64) as u64)
    }
}

/// Key of this import → the sequence number of the copy that wins so far ([`IN_LAKE`] once the
/// key was found in the lake at commit).
///
/// An open-addressing table of 16-byte slots, probed linearly from the key's low bits: the
/// keys are uniform hashes already, so a slot is found with one cache line read, and
/// [`KeyMap::prefetch`] lets the caller start that read a few events ahead. (A general hash
/// map reads a control group and then a bucket elsewhere: two cache misses per event, ~10 % of
/// an import's CPU, with 24-byte buckets.) A slot keeps 95 of the key's 128 bits: for 10⁹
/// events the chance that two different keys agree on them is ~10⁻¹¹.
#[derive(Default)]
pub(super) struct KeyMap {
    /// `[low word, PRESENT | 31 high bits << 32 | seq]`; all zero is an empty slot, so the
    /// table is allocated zeroed (lazily, by the OS).
    slots: Vec<[u64; 2]>,
    len: usize,
}

const PRESENT: u64 = 1 << 63;
/// The bits of a slot's second word that identify the key (PRESENT and the 31 high bits); the
/// low 32 are the sequence number.
const TAG: u64 = !0xffff_ffff;

/// How many keys ahead of the one being looked up callers prefetch (a few hundred cycles of
/// memory latency at tens of cycles a key).
pub(super) const PREFETCH_AHEAD: usize = 8;

/// At most 4/5 of the slots are in use (probes stay short: ~2–4 slots, one cache line or two).
const MAX_LOAD_NUM: usize = 4;
const MAX_LOAD_DEN: usize = 5;

impl KeyMap {
    fn tag(key: Key) -> u64 {
        PRESENT | ((key.1 >> 33) << 32)
    }

    fn home(&self, low: u64) -> usize {
        low as usize & (self.slots.len() - 1)
    }

    /// Room for `n` keys without growing.
    pub(super) fn reserve(&mut self, n: usize) {
        let wanted = (n * MAX_LOAD_DEN / MAX_LOAD_NUM + 1)
            .next_power_of_two()
            .max(16);
        if wanted > self.slots.len() {
            let old = std::mem::replace(&mut self.slots, vec![[0u64; 2]; wanted]);
            self.len = 0;
            for slot in old.into_iter().filter(|s| s[1] != 0) {
                // Keys are distinct, so this finds the empty slot where it goes.
                let i = self.find(slot[0], slot[1] & TAG);
                self.slots[i] = slot;
                self.len += 1;
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start reading `key`'s slot into the cache (a hint; does nothing where unsupported).
    pub(super) fn prefetch(&self, key: Key) {
        #[cfg(target_arch = "x86_64")]
        if !self.slots.is_empty() {
            let slot = &self.slots[self.home(key.0)];
            // SAFETY: a prefetch only hints the cache; the pointer is in bounds.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    slot.as_ptr().cast(),
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// The index of the slot of the key with this low word and tag, or of the empty slot where
    /// it would go.
    fn find(&self, low: u64, tag: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = self.home(low);
        loop {
            let [lo, meta] = self.slots[i];
            if meta == 0 || (lo == low && meta & TAG == tag) {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// The winning sequence number of `key`, if it is in the map.
    pub(super) fn get_mut(&mut self, key: Key) -> Option<Seq<'_>> {
        if self.slots.is_empty() {
            return None;
        }
        let i = self.find(key.0, Self::tag(key));
        (self.slots[i][1] != 0).then(|| Seq(&mut self.slots[i][1]))
    }

    pub(super) fn contains_key(&self, key: Key) -> bool {
        !self.slots.is_empty() && self.slots[self.find(key.0, Self::tag(key))][1] != 0
    }

    /// Insert `key` with `seq` and return `None`, or return the entry already there.
    pub(super) fn insert_or_get(&mut self, key: Key, seq: u32) -> Option<Seq<'_>> {
        if (self.len + 1) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM {
            self.reserve((self.len + 1) * 2);
        }
        let i = self.find(key.0, Self::tag(key));
        if self.slots[i][1] != 0 {
            return Some(Seq(&mut self.slots[i][1]));
        }
        self.slots[i] = [key.0, Self::tag(key) | u64::from(seq)];
        self.len += 1;
        None
    }
}

/// The sequence number stored in a slot of a [`KeyMap`].
pub(super) struct Seq<'a>(&'a mut u64);

impl Seq<'_> {
    pub(super) fn get(&self) -> u32 {
        *self.0 as u32
    }

    /// Store `seq`; returns the one it replaces.
    pub(super) fn replace(&mut self, seq: u32) -> u32 {
        let old = self.get();
        *self.0 = (*self.0 & TAG) | u64::from(seq);
        old
    }
}

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
            let hits = (0..keys.len())
                .filter(|&i| {
                    if let Some(&ahead) = keys.get(i + PREFETCH_AHEAD) {
                        winners.prefetch(ahead);
                    }
                    winners.contains_key(keys[i])
                })
                .map(|i| keys[i])
                .collect();
            (keys.len() as u64, hits)
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
                let mut winner = winners.get_mut(key).expect("a hit is a key of this import");
                if winner.get() != IN_LAKE {
                    losers.insert(winner.replace(IN_LAKE));
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// The table answers like a map: inserts, lookups and replaced sequence numbers, with
        /// keys crowded onto a few home slots (long probes, wrap-around at the end) and growth
        /// from empty.
        #[test]
        fn key_map_behaves_like_a_map(
            ops in prop::collection::vec((0u64..40, 0u64..6, 0u32..1000, any::<bool>()), 0..400),
            reserve in 0usize..50,
        ) {
            let mut map = KeyMap::default();
            map.reserve(reserve);
            let mut model = std::collections::HashMap::new();
            for (lo, hi, seq, replace) in ops {
                // Crowd the keys onto the first and the last three slots (probes run long and
                // wrap around); high words differ only in the kept bits.
                let home = if lo % 2 == 0 { lo % 3 } else { u64::MAX - lo % 3 };
                let key = Key((lo << 40) ^ home, hi << 33);
                map.prefetch(key);
                match map.insert_or_get(key, seq) {
                    None => prop_assert_eq!(model.insert(key.0 as u128 | (key.1 as u128) << 64, seq), None),
                    Some(mut found) => {
                        let k = key.0 as u128 | (key.1 as u128) << 64;
                        prop_assert_eq!(Some(found.get()), model.get(&k).copied());
                        if replace {
                            prop_assert_eq!(found.replace(seq), model[&k]);
                            model.insert(k, seq);
                        }
                    }
                }
                prop_assert!(map.contains_key(key));
            }
            prop_assert_eq!(map.len, model.len());
            prop_assert_eq!(map.is_empty(), model.is_empty());
            for (&k, &seq) in &model {
                let key = Key(k as u64, (k >> 64) as u64);
                prop_assert_eq!(map.get_mut(key).map(|s| s.get()), Some(seq));
            }
            prop_assert!(!map.contains_key(Key(7, 1 << 40)) || model.contains_key(&(7 | (1u128 << 104))));
        }
    }
}
