//! What the allocators do with freed memory. `engine.memory_limit` bounds DataFusion's
//! operators; what the process holds beyond them is mostly memory the allocator (mimalloc, see
//! `main.rs`) keeps after it is freed. mimalloc 3 returns freed memory to the OS after a delay
//! (1 s for pages, ten times that for its arenas) and commits a new arena's memory eagerly, so
//! over a run's models, each 1–3 s at 100M events and each freeing what the last allocated, RSS
//! climbed to 3–3.7 GiB with 1.5–1.9 GiB live (docs/benchmarks.md).
//!
//! [`ReturnFreedMemory`] makes the allocator return freed memory at once and commit arena
//! memory on demand for as long as a run computes a community's models, and puts the previous
//! behaviour back afterwards: `pulse import` keeps the faster one (immediate purging cost the
//! 10M import 10 %; never purging during an import saved only 0.7 % of its CPU, for 57 MiB
//! more, once [`keep_c_heap`] was in place), and so does `pulse serve`'s intake except while
//! one of its scheduled runs computes (one process, one allocator). Measured on the daily run
//! over 100M events on 2 cores: 54–55 s and 1.7–1.8 GiB against 48–49 s and 3.0–3.3 GiB; at
//! 10M no slower, 0.55 GiB against 1.7 GiB (docs/benchmarks.md).
//!
//! C libraries (zstd) allocate through glibc's malloc instead: see [`keep_c_heap`].
//!
//! An operator who prefers the speed sets `MIMALLOC_PURGE_DELAY` (and/or
//! `MIMALLOC_ARENA_EAGER_COMMIT`) in the environment: an option set there is left alone.
//! When mimalloc is not the process's allocator (the library's tests), the options change
//! nothing.

use std::sync::Mutex;

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// Positions in mimalloc 3's `mi_option_e` (the version libmimalloc-sys 0.1.49 builds, whose
/// Rust bindings do not name these two). A test checks them against their defaults.
const ARENA_EAGER_COMMIT: mi_option_t = 4;
const PURGE_DELAY: mi_option_t = 15;

/// The options a run sets: (option, its environment variable, the value during a run).
const DURING_RUN: [(mi_option_t, &str, i64); 2] = [
    (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 0),
    (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0),
];

/// How many runs hold a guard, and the options' values from before the first.
static ACTIVE: Mutex<(usize, Vec<(mi_option_t, i64)>)> = Mutex::new((0, Vec::new()));

/// While alive, freed memory goes back to the OS at once (see the module docs). Guards nest:
/// the last one dropped restores the options.
#[must_use = "the allocator returns freed memory only while the guard lives"]
pub struct ReturnFreedMemory(());

impl ReturnFreedMemory {
    pub fn start() -> Self {
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        if active.0 == 0 {
            active.1 = DURING_RUN
                .iter()
                .filter(|(_, env, _)| std::env::var_os(env).is_none())
                .map(|&(option, _, value)| {
                    // SAFETY: plain reads and writes of mimalloc's option table.
                    let before = unsafe { mi_option_get(option) } as i64;
                    unsafe { mi_option_set(option, value as _) };
                    (option, before)
                })
                .collect();
        }
        active.0 += 1;
        ReturnFreedMemory(())
    }
}

impl Drop for ReturnFreedMemory {
    fn drop(&mut self) {
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        active.0 -= 1;
        if active.0 == 0 {
            for (option, before) in active.1.drain(..) {
                // SAFETY: as above.
                unsafe { mi_option_set(option, before as _) };
            }
        }
    }
}

/// Keep the C heap's freed memory in the process. C libraries allocate with glibc's malloc,
/// not mimalloc: zstd above all, through the parquet crate, which creates a compression and a
/// decompression context (the compressor's workspace up to ~1 MiB) for every column chunk it
/// writes or reads. glibc's defaults map such a block fresh and unmap it when it is freed, or
/// trim the heap under it, so every context came back as zeroed pages: a 1M-event import took
/// 59,000 page faults, 57,000 of them these (about 2,100 with this setting), and the kernel
/// clearing pages was 11 % of a 10M import's CPU (4 % with it). Called once at start by the
/// binary: blocks up to 32 MiB come from the heap, which is trimmed only beyond 512 MiB free
/// at its top (the C allocations' peak is a few MiB a thread). Left alone when the operator
/// tunes glibc's malloc through `GLIBC_TUNABLES`.
pub fn keep_c_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        // SAFETY: mallopt only sets glibc's allocator parameters, before any thread starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(option: mi_option_t) -> i64 {
        unsafe { mi_option_get(option) as i64 }
    }

    /// The positions name the options meant: mimalloc 3's defaults are an arena eager commit
    /// of 2 ("on overcommit systems") and a purge delay of 1,000 ms; a guard sets both to 0
    /// and the last guard dropped puts them back.
    #[test]
    fn options_are_set_during_a_run_and_restored() {
        assert_eq!(get(ARENA_EAGER_COMMIT), 2);
        assert_eq!(get(PURGE_DELAY), 1000);
        let outer = ReturnFreedMemory::start();
        let inner = ReturnFreedMemory::start();
        assert_eq!((get(ARENA_EAGER_COMMIT), get(PURGE_DELAY)), (0, 0));
        drop(inner);
        assert_eq!((get(ARENA_EAGER_COMMIT), get(PURGE_DELAY)), (0, 0));
        drop(outer);
        assert_eq!((get(ARENA_EAGER_COMMIT), get(PURGE_DELAY)), (2, 1000));
    }
}
