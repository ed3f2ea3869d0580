//! Final files of quiet partitions, written on the thread pool while the import reads on.
//!
//! A quiet partition's write (sort, encode, compress: tens of milliseconds for a busy day) is
//! one task that cannot be split. Run inside the batch that found it, it held the next batch
//! back while one core sat idle; spawned here, it fills whatever core is free and the import
//! only collects the file names later.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc;

use datafusion::arrow::array::RecordBatch;

use super::{write_final, Staged, WriterOptions};
use crate::error::Result;

/// One finished write: the partition and its staged file, or why it failed.
pub(super) type Written = Result<(String, i32, Staged)>;

/// What a background task sends back: its result, or its panic (resumed on the importer's
/// thread, as a panic in a parallel iterator would be).
type Outcome = std::thread::Result<Written>;

/// Writes in flight. Dropping it waits for them, so none writes into staging after an import
/// that failed has removed it.
pub(super) struct BackgroundWrites {
    sender: mpsc::Sender<Outcome>,
    receiver: mpsc::Receiver<Outcome>,
    in_flight: usize,
}

impl Default for BackgroundWrites {
    fn default() -> Self {
        let (sender, receiver) = mpsc::channel();
        Self {
            sender,
            receiver,
            in_flight: 0,
        }
    }
}

impl BackgroundWrites {
    /// Start writing `batch` (a partition's rows, staged schema) to `path` as its final file.
    pub(super) fn start(
        &mut self,
        partition: (String, i32),
        batch: RecordBatch,
        path: PathBuf,
        options: &WriterOptions,
    ) {
        let sender = self.sender.clone();
        let options = options.clone();
        self.in_flight += 1;
        rayon::spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let (community, date) = partition;
                write_final(&batch, &path, &options).map(|staged| (community, date, staged))
            }));
            // The receiver lives as long as the writes (dropping it waits for them).
            let _ = sender.send(outcome);
        });
    }

    /// The writes finished so far, after waiting until at most `left` are still running. The
    /// wait runs the pool's queued work (perhaps the awaited write itself) before it blocks, so
    /// it never holds the one thread a write needs (as with one thread, `RAYON_NUM_THREADS=1`).
    pub(super) fn finished(&mut self, left: usize) -> Vec<Written> {
        let mut done = Vec::new();
        loop {
            let outcome = match self.receiver.try_recv() {
                Ok(outcome) => outcome,
                Err(_) if self.in_flight > left => {
                    if rayon::yield_now() == Some(rayon::Yield::Executed) {
                        continue;
                    }
                    // Nothing runnable on this thread: the writes are running on others.
                    self.receiver.recv().expect("the sender is held here")
                }
                Err(_) => return done,
            };
            self.in_flight -= 1;
            match outcome {
                Ok(written) => done.push(written),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    }
}

impl Drop for BackgroundWrites {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return; // unwinding already; the next writer clears staging
        }
        self.finished(0);
    }
}
