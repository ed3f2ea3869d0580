//! `pulse serve`: the webhook receiver ([`crate::ingest::server`]), the spool compactor and
//! the scheduler, side by side until SIGTERM or Ctrl-C — roapi's shape:
//! [`Application::build`] opens the spool and binds the listener (so a bad address fails
//! before anything runs), [`Application::run_until_stopped`] runs the three.
//!
//! The scheduler wakes at the next fire of any community ([`crate::schedule`] says what is
//! due), runs what is due (oldest first, one run at a time, never overlapping another
//! process's run), sleeps again, and stops cleanly on a shutdown signal.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{CommunitySettings, Config};

use crate::error::{Chain, Error, Result};
use crate::lake::Lake;
use crate::pipeline::history::{
    history, latest_runs, record_abandoned, RunKind, RunLock, RunRecord, RunStatus,
};
use crate::pipeline::{auto_compact, intake, run_pipeline, select_communities, PipelineOptions};
use crate::schedule::{as_of_for, next_fire, plan, Limits};
use crate::spool::Spool;
use crate::state::StateDir;

/// Shutdown signals received so far: 1 = finish the current run and stop, 2 = abandon it.
pub type Shutdown = watch::Receiver<u32>;

/// Move the spool into the lake on `ingest.schedule` (UTC), until a shutdown signal; a tick
/// that finds a run in progress is skipped (the run compacts the spool itself).
pub async fn compactor(
    config: &Config,
    lake: &Lake,
    spool: Spool,
    mut shutdown: Shutdown,
) -> Result<()> {
    let cron = config.ingest.schedule.schedule();
    let state = StateDir::new(&config.state_dir);
    loop {
        let now = Utc::now();
        let next = next_fire(cron, chrono_tz::UTC, now).unwrap_or(now + chrono::Duration::hours(1));
        tokio::select! {
            _ = tokio::time::sleep((next - now).to_std().unwrap_or(Duration::ZERO)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() > 0 {
            return Ok(());
        }
        let _lock = match RunLock::try_acquire(&state) {
            Ok(lock) => lock,
            Err(Error::RunInProgress { .. }) => continue,
            Err(e) => return Err(e),
        };
        match spool.compact(lake).await {
            Ok(s) if s.read > 0 => tracing::info!(
                imported = s.imported,
                duplicate = s.duplicate,
                quarantined = s.quarantined,
                "spool moved into the lake"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(
                    "spool compaction failed (the segments stay and are retried): {}",
                    Chain(&e)
                )
            }
        }
        // The spool move just added a file to each partition it touched.
        match tokio::task::block_in_place(|| auto_compact(config, lake)) {
            Ok(Some(stage)) => tracing::info!("event files compacted: {}", stage.detail),
            Ok(None) => {}
            Err(e) => tracing::error!(
                "compacting event files failed (tried again after the next spool move): {}",
                Chain(&e)
            ),
        }
    }
}

/// Run the schedule until a shutdown signal. With the receiver's `spool`, each run first seals
/// and moves it into the lake, so a run sees every event acknowledged before it.
pub async fn scheduler(
    config: &Config,
    lake: &Lake,
    spool: Option<Spool>,
    mut shutdown: Shutdown,
) -> Result<()> {
    let state = StateDir::new(&config.state_dir);
    let cron = config.report.schedule.schedule();
    let ingest_cron = config.ingest.schedule.schedule();
    let limits = Limits {
        catch_up: config.report.catch_up as usize,
        max_attempts: config.report.max_attempts as usize,
    };
    for c in select_communities(config, lake, None)? {
        if let Some(next) = next_fire(cron, c.timezone, Utc::now()) {
            tracing::info!(community = %c.id, next = %next.with_timezone(&c.timezone), "scheduled `{}`", config.report.schedule);
        }
    }
    loop {
        if *shutdown.borrow() > 0 {
            break;
        }
        let now = Utc::now();
        // Looked up every tick: a community whose first events just arrived (by webhook, with
        // none configured) is scheduled from then on.
        let communities = select_communities(config, lake, None)?;
        for c in register(&state, &communities, now)? {
            tracing::info!(community = %c.id, "community seen for the first time: scheduled from now on");
        }
        let runs = latest_runs(history(&state).read()?);
        let mut due: Vec<_> = communities
            .iter()
            .flat_map(|c| {
                plan(cron, c, &runs, now, limits)
                    .into_iter()
                    .map(move |d| (c, d))
            })
            .collect();
        due.sort_by_key(|(_, d)| d.due_at);
        let mut retry_soon = false;
        for (settings, d) in due {
            if *shutdown.borrow() > 0 {
                break;
            }
            let lock = match RunLock::try_acquire(&state) {
                Ok(lock) => lock,
                Err(Error::RunInProgress { holder }) => {
                    tracing::info!(holder = %holder, "another run is in progress; trying again on the next tick");
                    retry_soon = true;
                    break;
                }
                Err(e) => return Err(e),
            };
            // Seal the open spool segment and move it, then pick up exports: the run sees
            // every event acknowledged before it.
            if let Some(spool) = &spool {
                if let Err(e) = spool.compact(lake).await {
                    tracing::error!(
                        "spool compaction failed (the segments stay and are retried): {}",
                        Chain(&e)
                    );
                }
            }
            let intake = tokio::task::block_in_place(|| intake(config, lake)).unwrap_or_else(|e| {
                tracing::error!("intake failed (retried before the next run): {}", Chain(&e));
                Vec::new()
            });
            tracing::info!(community = %settings.id, as_of = %d.as_of, late = d.late, "run started");
            let options = PipelineOptions {
                kind: Some(RunKind::Scheduled),
                due_at: Some(d.due_at),
                late: d.late,
                intake,
                ..PipelineOptions::default()
            };
            let run = run_pipeline(config, lake, settings, d.as_of, &options);
            tokio::pin!(run);
            let outcome = loop {
                tokio::select! {
                    r = &mut run => break Some(r),
                    changed = shutdown.changed() => {
                        let signals = *shutdown.borrow();
                        if changed.is_err() || signals >= 2 {
                            break None;
                        }
                        tracing::info!("finishing the current run before stopping (signal again to abandon it)");
                    }
                }
            };
            drop(lock);
            match outcome {
                Some(Ok(run)) => {
                    let r = &run.record;
                    if r.status == RunStatus::Succeeded {
                        tracing::info!(community = %r.community, as_of = %r.as_of, stages = ?r.stages.iter().map(|s| format!("{} {:.1}s", s.name, s.seconds)).collect::<Vec<_>>(), "run succeeded");
                    } else {
                        retry_soon = true;
                        tracing::error!(community = %r.community, as_of = %r.as_of, error = r.error.as_deref().unwrap_or(""), "run failed; it is retried on the next tick");
                    }
                }
                Some(Err(e)) => {
                    retry_soon = true;
                    tracing::error!("run could not be recorded: {}", Chain(&e));
                }
                None => {
                    let latest = latest_runs(history(&state).read()?)
                        .into_iter()
                        .rev()
                        .find(|r| r.community == settings.id && r.status == RunStatus::Running);
                    if let Some(record) = latest {
                        record_abandoned(&state, record)?;
                    }
                    tracing::warn!(community = %settings.id, as_of = %d.as_of, "run abandoned by a second shutdown signal");
                    break;
                }
            }
        }
        if *shutdown.borrow() > 0 {
            break;
        }
        // Sleep until the next fire of any community (or a retry), or a shutdown signal.
        let now = Utc::now();
        let mut wake = communities
            .iter()
            .filter_map(|c| next_fire(cron, c.timezone, now))
            .min()
            .unwrap_or(now + chrono::Duration::days(1));
        if retry_soon {
            wake = wake.min(now + chrono::Duration::seconds(config.report.retry_secs as i64));
        }
        // Look again after the next spool compaction, which may bring new communities' first
        // events into the lake.
        if let Some(compaction) = next_fire(ingest_cron, chrono_tz::UTC, now) {
            wake = wake.min(compaction + chrono::Duration::seconds(1));
        }
        let wait = (wake - now).to_std().unwrap_or(Duration::ZERO);
        tracing::debug!(until = %wake, "sleeping");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

/// Record that the scheduler has seen each community, the first time it does; returns the
/// communities seen for the first time.
fn register<'a>(
    state: &StateDir,
    communities: &'a [CommunitySettings],
    now: DateTime<Utc>,
) -> Result<Vec<&'a CommunitySettings>> {
    let ledger = history(state);
    let runs = ledger.read()?;
    let mut new = Vec::new();
    for c in communities {
        let seen = runs
            .iter()
            .any(|r| r.community == c.id && r.kind == RunKind::Registered);
        if !seen {
            ledger.append(&RunRecord {
                run_id: format!("registered-{}", c.id),
                kind: RunKind::Registered,
                community: c.id.clone(),
                as_of: as_of_for(now, c.timezone),
                due_at: None,
                job: None,
                status: RunStatus::Succeeded,
                late: false,
                started_at: now,
                finished_at: Some(now),
                stages: Vec::new(),
                error: None,
            })?;
            new.push(c);
        }
    }
    Ok(new)
}

/// A shutdown channel fed by SIGTERM and SIGINT (each signal increments the count).
pub fn shutdown_signals() -> Result<Shutdown> {
    let (tx, rx) = watch::channel(0u32);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| crate::Error::Io {
            context: "listening for SIGTERM".into(),
            source: e,
        })?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                r = tokio::signal::ctrl_c() => { if r.is_err() { break; } }
            }
            tracing::info!("shutdown signal received");
            tx.send_modify(|n| *n += 1);
        }
    });
    Ok(rx)
}

/// A built `pulse serve`: spool open, listener bound.
pub struct Application {
    config: Config,
    lake: Lake,
    spool: Spool,
    listener: TcpListener,
}

impl Application {
    /// Open the spool (recovering a torn tail) and bind `ingest.listen`.
    pub async fn build(config: Config, lake: Lake) -> Result<Application> {
        let spool = Spool::open(&config.state_dir.join("spool"))?;
        let listener = crate::ingest::server::bind(&config).await?;
        Ok(Application {
            config,
            lake,
            spool,
            listener,
        })
    }

    /// The address the receiver listens on (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|e| Error::Io {
            context: "reading the listen address".into(),
            source: e,
        })
    }

    /// The receiver, the compactor and the scheduler until `shutdown`: then the receiver stops
    /// accepting, the current run finishes, and the spool (every acknowledged event already
    /// fsynced) is left for the next start or run to compact.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<()> {
        let Application {
            config,
            lake,
            spool,
            listener,
        } = self;
        let mut stop_http = shutdown.clone();
        let http = crate::ingest::server::serve(listener, &config, spool.clone(), async move {
            let _ = stop_http.changed().await;
        });
        // The compactor and the scheduler call blocking code (`block_in_place`: imports,
        // compaction, runs). In tasks of their own, that blocks their worker thread only; joined
        // with the receiver in one task, it stalled the accept loop for the length of an import.
        let compactor = tokio::spawn({
            let (config, lake, spool, shutdown) = (
                config.clone(),
                lake.clone(),
                spool.clone(),
                shutdown.clone(),
            );
            async move { compactor(&config, &lake, spool, shutdown).await }
        });
        let scheduler = tokio::spawn({
            let (config, lake) = (config.clone(), lake.clone());
            async move { scheduler(&config, &lake, Some(spool), shutdown).await }
        });
        let (http, compactor, scheduler) = tokio::join!(http, compactor, scheduler);
        // A panic in a task is the panic it was when the three were joined in one task.
        let joined = |r: std::result::Result<Result<()>, tokio::task::JoinError>| match r {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Ok(()), // cancelled: only when the runtime itself shuts down
        };
        http.and(joined(compactor)).and(joined(scheduler))
    }
}
