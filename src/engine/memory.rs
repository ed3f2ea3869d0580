//! What the allocator does with freed memory during a models run and during an import.
//! `engine.memory_limit` bounds DataFusion's operators; what the
//! process holds beyond them is mostly memory the allocator (mimalloc, see `main.rs`) keeps
//! after it is freed. mimalloc 3 returns freed memory to the OS after a delay (1 s for pages,
//! ten times that for its arenas) and commits a new arena's memory eagerly, so over a run's
//! models, each 1–3 s at 100M events and each freeing what the last allocated, RSS climbed to
//! 3–3.7 GiB with 1.5–1.9 GiB live (docs/benchmarks.md).
//!
//! [`ReturnFreedMemory`] makes the allocator return freed memory at once and commit arena
//! memory on demand for as long as a run computes a community's models, and puts the previous
//! behaviour back afterwards. Measured on the daily run over 100M events on 2 cores: 54–55 s
//! and 1.7–1.8 GiB against 48–49 s and 3.0–3.3 GiB; at 10M no slower, 0.55 GiB against
//! 1.7 GiB (docs/benchmarks.md).
//!
//! [`KeepFreedMemory`] does the opposite for an import: nothing freed goes back to the OS
//! while it lasts. An import frees its buffered rows at every spill and builds as many again
//! at once; with the default delay each round trip returned the pages and took them back,
//! zeroed (a tenth of an import's CPU was the kernel clearing pages). Its memory is bounded by
//! `memory_budget` and the key map anyway, so keeping the freed pages costs ~50–80 MiB at 10M
//! events. While a run holds a [`ReturnFreedMemory`] (`pulse serve` imports its spool while a
//! scheduled run may compute), the run's setting wins.
//!
//! An operator who prefers otherwise sets `MIMALLOC_PURGE_DELAY` (and/or
//! `MIMALLOC_ARENA_EAGER_COMMIT`) in the environment: an option set there is left alone.
//! When mimalloc is not the process's allocator (the library's tests), the options change
//! nothing.

use std::sync::Mutex;

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// Positions in mimalloc 3's `mi_option_e` (the version libmimalloc-sys 0.1.49 builds, whose
/// Rust bindings do not name these two). A test checks them against their defaults.
const ARENA_EAGER_COMMIT: mi_option_t = 4;
const PURGE_DELAY: mi_option_t = 15;

/// The options the guards set, with their environment variables.
const OPTIONS: [(mi_option_t, &str); 2] = [
    (PURGE_DELAY, "MIMALLOC_PURGE_DELAY"),
    (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT"),
];

/// Live guards of each kind, and the options' values from before the first guard.
struct Guards {
    runs: usize,
    imports: usize,
    defaults: Vec<(mi_option_t, i64)>,
}

static GUARDS: Mutex<Guards> = Mutex::new(Guards {
    runs: 0,
    imports: 0,
    defaults: Vec::new(),
});

impl Guards {
    /// Count a guard in or out with `count`, then set the options the live guards call for.
    fn update(count: impl FnOnce(&mut Guards)) {
        let mut guards = GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        if guards.runs + guards.imports == 0 {
            guards.defaults = OPTIONS
                .iter()
                .filter(|(_, env)| std::env::var_os(env).is_none())
                // SAFETY: plain reads of mimalloc's option table.
                .map(|&(option, _)| (option, unsafe { mi_option_get(option) } as i64))
                .collect();
        }
        count(&mut guards);
        for &(option, default) in &guards.defaults {
            let value = match option {
                _ if guards.runs > 0 => 0,
                PURGE_DELAY if guards.imports > 0 => -1,
                _ => default,
            };
            // SAFETY: plain writes of mimalloc's option table.
            unsafe { mi_option_set(option, value as _) };
        }
    }
}

/// While alive, freed memory goes back to the OS at once (see the module docs). Guards nest:
/// the last one dropped restores the options.
#[must_use = "the allocator returns freed memory only while the guard lives"]
pub struct ReturnFreedMemory(());

impl ReturnFreedMemory {
    pub fn start() -> Self {
        Guards::update(|g| g.runs += 1);
        ReturnFreedMemory(())
    }
}

impl Drop for ReturnFreedMemory {
    fn drop(&mut self) {
        Guards::update(|g| g.runs -= 1);
    }
}

/// While alive (and no [`ReturnFreedMemory`] is), freed memory stays with the process for
/// reuse (see the module docs).
#[must_use = "the allocator keeps freed memory only while the guard lives"]
pub struct KeepFreedMemory(());

impl KeepFreedMemory {
    pub fn start() -> Self {
        Guards::update(|g| g.imports += 1);
        KeepFreedMemory(())
    }
}

impl Drop for KeepFreedMemory {
    fn drop(&mut self) {
        Guards::update(|g| g.imports -= 1);
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
        // An import keeps freed memory, unless a run is computing meanwhile.
        let import = KeepFreedMemory::start();
        assert_eq!((get(ARENA_EAGER_COMMIT), get(PURGE_DELAY)), (2, -1));
        let run = ReturnFreedMemory::start();
        assert_eq!((get(ARENA_EAGER_COMMIT), get(PURGE_DELAY)), (0, 0));
        drop(run);
        assert_eq!((get(ARENA_EAGER_COMMIT), get(PURGE_DELAY)), (2, -1));
        drop(import);
        assert_eq!((get(ARENA_EAGER_COMMIT), get(PURGE_DELAY)), (2, 1000));
    }
}
