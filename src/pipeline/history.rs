//! What runs did, and the lock that keeps them from overlapping.
//!
//! - `<state_dir>/runs.jsonl` holds one [`RunRecord`] when a run starts (status `running`) and
//!   one when it ends, with its stages, durations, row counts and outcome; [`latest_runs`]
//!   folds them to the latest record of each run. The schedule plans from it.
//! - [`RunLock`] keeps runs from overlapping, across processes: an OS lock on
//!   `<state_dir>/run.lock`, released by the kernel when its holder dies, so a crashed process
//!   never leaves it stuck. A held lock is [`Error::RunInProgress`], naming the holder.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::state::StateDir;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// `pulse serve`'s schedule.
    Scheduled,
    /// `pulse run`.
    Manual,
    /// `pulse backfill`.
    Backfill,
    /// Not a run: the moment the scheduler first saw a community (fires before it are not due).
    Registered,
    /// Not a run: `pulse forget` erased members (SPEC §8); the record has counts, never ids.
    Erasure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Stopped by a shutdown before it finished; nothing partial was published.
    Abandoned,
}

/// One stage of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    pub seconds: f64,
    /// Row counts or what was delivered.
    pub detail: String,
}

/// One line of `runs.jsonl`: a run when it starts (status `running`) and when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub kind: RunKind,
    pub community: String,
    #[serde(with = "crate::state::iso_date")]
    pub as_of: NaiveDate,
    /// The scheduled fire this run is for (scheduled runs).
    #[serde(with = "crate::state::rfc3339::option")]
    pub due_at: Option<DateTime<Utc>>,
    /// The backfill job this run belongs to.
    pub job: Option<String>,
    pub status: RunStatus,
    pub late: bool,
    #[serde(with = "crate::state::rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "crate::state::rfc3339::option")]
    pub finished_at: Option<DateTime<Utc>>,
    pub stages: Vec<Stage>,
    pub error: Option<String>,
}

pub fn history(state: &StateDir) -> crate::state::Ledger<RunRecord> {
    state.ledger("runs")
}

/// The latest record of each run, in the order runs started.
pub fn latest_runs(records: Vec<RunRecord>) -> Vec<RunRecord> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, RunRecord> = BTreeMap::new();
    for r in records {
        if !by_id.contains_key(&r.run_id) {
            order.push(r.run_id.clone());
        }
        by_id.insert(r.run_id.clone(), r);
    }
    order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect()
}

/// The cross-process run lock (see the module docs). Its file holds the holder's pid and start
/// time, for the message a second process prints.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Take the lock; [`Error::RunInProgress`] (naming the holder) when another run has it.
    pub fn try_acquire(state: &StateDir) -> Result<RunLock> {
        std::fs::create_dir_all(state.root())
            .io_context(|| format!("creating {}", state.root().display()))?;
        let path = state.root().join("run.lock");
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .io_context(|| format!("opening {}", path.display()))?;
        if file.try_lock().is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(Error::RunInProgress {
                holder: holder.trim().to_string(),
            });
        }
        let stamp = format!(
            "pid {} since {}",
            std::process::id(),
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(stamp.as_bytes()))
            .io_context(|| format!("writing {}", path.display()))?;
        Ok(RunLock { _file: file })
    }
}

/// Record a run that a shutdown stopped before it finished.
pub fn record_abandoned(state: &StateDir, mut record: RunRecord) -> Result<()> {
    record.status = RunStatus::Abandoned;
    record.finished_at = Some(Utc::now());
    record.error = Some("stopped by a shutdown signal; nothing partial was published".into());
    history(state).append(&record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_record_of_each_run_wins() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = RunRecord {
            run_id: "a".into(),
            kind: RunKind::Manual,
            community: "c1".into(),
            as_of: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
            due_at: None,
            job: None,
            status: RunStatus::Running,
            late: false,
            started_at: at,
            finished_at: None,
            stages: Vec::new(),
            error: None,
        };
        let mut a2 = a.clone();
        a2.status = RunStatus::Succeeded;
        let mut b = a.clone();
        b.run_id = "b".into();
        let runs = latest_runs(vec![a, b, a2]);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].status, RunStatus::Succeeded);
    }
}
