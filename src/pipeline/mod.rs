//! One run, start to finish: intake (export pickup, spool → lake), the models, then delivery
//! (report, email, ranked lists), recorded in the run history ([`history`]). `pulse run`
//! ([`run_now`]), `pulse backfill` ([`backfill`]) and the schedule of `pulse serve` all go
//! through [`run_pipeline`].

pub mod deliver;
pub mod history;

use chrono::{DateTime, NaiveDate, Utc};

use crate::config::{CommunitySettings, Config};
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::schedule::as_of_for;
use crate::state::StateDir;
pub use deliver::{DeliverOptions, DeliverySummary};
use history::{history, latest_runs, RunKind, RunLock, RunRecord, RunStatus, Stage};

/// How a pipeline run should go.
#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    pub kind: Option<RunKind>,
    pub due_at: Option<DateTime<Utc>>,
    pub job: Option<String>,
    pub late: bool,
    /// Only compute the models (backfill without `--send`).
    pub models_only: bool,
    /// Stages of the intake that ran just before (recorded with this run).
    pub intake: Vec<Stage>,
    pub deliver: DeliverOptions,
}

/// What a pipeline run did.
#[derive(Debug)]
pub struct PipelineRun {
    pub record: RunRecord,
    pub models: Option<crate::models::CommunityRun>,
    pub delivery: Option<DeliverySummary>,
}

impl PipelineRun {
    /// Succeeded, and delivered everything it tried to.
    pub fn ok(&self) -> bool {
        self.record.status == RunStatus::Succeeded && self.delivery.as_ref().is_none_or(|d| d.ok())
    }
}

/// Intake, before runs: new export files and the webhook events waiting in the spool go to
/// the lake (see [`crate::ingest::exports::pickup`], [`crate::spool::compact_from_outside`]).
/// Returns a stage for each that did something. A failing export file does not stop the run:
/// it is named in the stage, and set aside in `rejected/` (when the file is at fault) or tried
/// again next time.
pub fn intake(config: &Config, lake: &Lake) -> Result<Vec<Stage>> {
    let state = StateDir::new(&config.state_dir);
    let mut stages = Vec::new();
    let clock = std::time::Instant::now();
    let picked = crate::ingest::exports::pickup(config, lake, &state)?;
    if picked.files > 0 || !picked.failed.is_empty() || !picked.rejected.is_empty() {
        let mut detail = format!(
            "{} file(s), {} events imported",
            picked.files, picked.imported
        );
        if picked.forgotten > 0 {
            detail.push_str(&format!(
                ", {} events of forgotten members dropped",
                picked.forgotten
            ));
        }
        if !picked.failed.is_empty() {
            detail.push_str(&format!(
                "; not imported (retried next run): {}",
                picked.failed.join("; ")
            ));
        }
        if !picked.rejected.is_empty() {
            detail.push_str(&format!(
                "; rejected (set aside, not retried): {}",
                picked.rejected.join("; ")
            ));
        }
        stages.push(Stage {
            name: "exports".into(),
            seconds: clock.elapsed().as_secs_f64(),
            detail,
        });
    }
    let clock = std::time::Instant::now();
    let moved = crate::spool::compact_from_outside(&state.root().join("spool"), lake)?;
    if moved.read > 0 {
        stages.push(Stage {
            name: "spool".into(),
            seconds: clock.elapsed().as_secs_f64(),
            detail: format!(
                "{} imported, {} duplicate, {} quarantined, {} forgotten",
                moved.imported, moved.duplicate, moved.quarantined, moved.forgotten
            ),
        });
    }
    let clock = std::time::Instant::now();
    let retention = crate::privacy::retention::apply(config, lake)?;
    if retention.partitions > 0 {
        stages.push(Stage {
            name: "text_retention".into(),
            seconds: clock.elapsed().as_secs_f64(),
            detail: format!(
                "title and body cleared on {} event(s) older than {} day(s) in {} partition(s)",
                retention.events,
                config.privacy.text_retention_days.unwrap_or(0),
                retention.partitions
            ),
        });
    }
    if let Some(stage) = auto_compact(config, lake)? {
        stages.push(stage);
    }
    Ok(stages)
}

/// Merge the event partitions that have more than `compaction.max_files` files (after intake,
/// and after each spool move of `pulse serve`); the stage it was, if it merged any.
pub fn auto_compact(config: &Config, lake: &Lake) -> Result<Option<Stage>> {
    if config.compaction.max_files == 0 {
        return Ok(None);
    }
    let clock = std::time::Instant::now();
    let options = crate::lake::compact::CompactOptions {
        above_files: config.compaction.max_files as usize,
        ..Default::default()
    };
    let stats = crate::lake::compact::compact(lake, &options)?;
    Ok((stats.partitions > 0).then(|| Stage {
        name: "compaction".into(),
        seconds: clock.elapsed().as_secs_f64(),
        detail: format!(
            "{} partition(s) of more than {} files: {} files → {}",
            stats.partitions, config.compaction.max_files, stats.files_before, stats.partitions
        ),
    }))
}

/// Run the stages for one community and as_of, and record the run. Errors of a stage are
/// recorded (status `failed`, with the reason) and returned in the record, not as `Err`;
/// `Err` is for failures to record.
pub async fn run_pipeline(
    config: &Config,
    lake: &Lake,
    settings: &CommunitySettings,
    as_of: NaiveDate,
    options: &PipelineOptions,
) -> Result<PipelineRun> {
    let state = StateDir::new(&config.state_dir);
    let ledger = history(&state);
    let started = Utc::now();
    let mut record = RunRecord {
        run_id: format!(
            "{}-{}-{}",
            started.format("%Y%m%dT%H%M%S%.3fZ"),
            settings.id,
            as_of
        ),
        kind: options.kind.unwrap_or(RunKind::Manual),
        community: settings.id.clone(),
        as_of,
        due_at: options.due_at,
        job: options.job.clone(),
        status: RunStatus::Running,
        late: options.late,
        started_at: started,
        finished_at: None,
        stages: Vec::new(),
        error: None,
    };
    ledger.append(&record)?;
    let mut models = None;
    let mut delivery = None;
    let outcome: Result<()> = async {
        // What intake did just before this run (see [`intake`]).
        record.stages.extend(options.intake.iter().cloned());
        let clock = std::time::Instant::now();
        let run = {
            let _lock = lake.lock()?;
            crate::models::run_community(config, lake, settings, as_of).await?
        };
        record.stages.push(Stage {
            name: "models".into(),
            seconds: clock.elapsed().as_secs_f64(),
            detail: run
                .tables
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        });
        models = Some(run);
        if options.models_only {
            return Ok(());
        }
        let clock = std::time::Instant::now();
        let mut deliver = options.deliver;
        deliver.late = options.late;
        let summary = deliver::deliver(config, lake, &[(settings.clone(), as_of)], deliver).await?;
        record.stages.push(Stage {
            name: "deliver".into(),
            seconds: clock.elapsed().as_secs_f64(),
            detail: format!(
                "{} email(s) sent, {} failed, {} rejected; {} sink(s), {} failed",
                summary.email.sent,
                summary.email.failed.len(),
                summary.email.rejected.len(),
                summary.sinks.len(),
                summary.sinks.iter().filter(|s| !s.ok).count()
            ),
        });
        if !summary.ok() {
            record.error = Some("some deliveries failed (see `pulse deliveries`)".into());
        }
        delivery = Some(summary);
        Ok(())
    }
    .await;
    record.finished_at = Some(Utc::now());
    match outcome {
        Ok(()) => record.status = RunStatus::Succeeded,
        Err(e) => {
            record.status = RunStatus::Failed;
            record.error = Some(crate::error::Chain(&e).to_string());
        }
    }
    ledger.append(&record)?;
    crate::telemetry::get().run_ended(&record);
    Ok(PipelineRun {
        record,
        models,
        delivery,
    })
}

/// `pulse run` (and `pulse demo`): the pipeline now, for each selected community, at `as_of`
/// (default: today in each community's timezone), one after the other.
/// [`crate::Error::RunInProgress`] when another run holds the lock.
pub async fn run_now(
    config: &Config,
    lake: &Lake,
    as_of: Option<NaiveDate>,
    only: Option<&str>,
    deliver: DeliverOptions,
) -> Result<Vec<PipelineRun>> {
    let state = StateDir::new(&config.state_dir);
    let _lock = RunLock::try_acquire(&state)?;
    // Intake first: it may bring the first events of a community into the lake.
    let mut intake_stages = if deliver.dry_run {
        Vec::new()
    } else {
        tokio::task::block_in_place(|| intake(config, lake))?
    };
    let communities = select_communities(config, lake, only)?;
    let mut runs = Vec::new();
    for settings in &communities {
        let day = as_of.unwrap_or_else(|| as_of_for(Utc::now(), settings.timezone));
        let options = PipelineOptions {
            kind: Some(RunKind::Manual),
            deliver,
            intake: std::mem::take(&mut intake_stages),
            ..PipelineOptions::default()
        };
        let run = run_pipeline(config, lake, settings, day, &options).await?;
        if let Some(m) = &run.models {
            tracing::info!(community = %m.community, as_of = %day, rollup_partitions_refreshed = m.rollups.refreshed, seconds = format!("{:.2}", m.seconds), "metrics computed");
        }
        runs.push(run);
    }
    Ok(runs)
}

/// What `pulse backfill` computes.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub community: Option<String>,
    /// Also deliver (report, email, ranked lists).
    pub send: bool,
    /// Recompute dates this job already finished.
    pub restart: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a backfill did.
#[derive(Debug, Default)]
pub struct BackfillOutcome {
    pub computed: usize,
    /// Finished by an earlier, interrupted run of the same backfill.
    pub skipped: usize,
    pub failed: Vec<String>,
    pub seconds: f64,
}

/// `pulse backfill`: every (community, as_of) of the range, oldest first. The job is named by
/// its arguments, and each finished item is recorded under that name, so the same command
/// after an interruption resumes where it stopped.
pub async fn backfill(
    config: &Config,
    lake: &Lake,
    options: &BackfillOptions,
) -> Result<BackfillOutcome> {
    let started = std::time::Instant::now();
    let communities = select_communities(config, lake, options.community.as_deref())?;
    let state = StateDir::new(&config.state_dir);
    let _lock = RunLock::try_acquire(&state)?;
    let job = format!(
        "backfill {}..{} {} {}",
        options.from,
        options.to,
        options.community.as_deref().unwrap_or("*"),
        if options.send { "send" } else { "models" }
    );
    let done: std::collections::HashSet<(String, NaiveDate)> = if options.restart {
        Default::default()
    } else {
        latest_runs(history(&state).read()?)
            .into_iter()
            .filter(|r| r.job.as_deref() == Some(job.as_str()) && r.status == RunStatus::Succeeded)
            .map(|r| (r.community, r.as_of))
            .collect()
    };
    let days: Vec<NaiveDate> = options
        .from
        .iter_days()
        .take_while(|d| *d <= options.to)
        .collect();
    let items: Vec<(&CommunitySettings, NaiveDate)> = days
        .iter()
        .flat_map(|d| communities.iter().map(move |c| (c, *d)))
        .collect();
    let bar = if options.progress {
        indicatif::ProgressBar::new(items.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} (eta {eta})")
            .expect("progress template"),
    );
    let mut outcome = BackfillOutcome::default();
    for (settings, as_of) in items {
        bar.set_message(format!("{} {as_of}", settings.id));
        if done.contains(&(settings.id.clone(), as_of)) {
            outcome.skipped += 1;
            bar.inc(1);
            continue;
        }
        let run_options = PipelineOptions {
            kind: Some(RunKind::Backfill),
            job: Some(job.clone()),
            models_only: !options.send,
            ..PipelineOptions::default()
        };
        let run = run_pipeline(config, lake, settings, as_of, &run_options).await?;
        if run.ok() {
            outcome.computed += 1;
        } else {
            outcome.failed.push(format!(
                "{} as_of {as_of}: {}",
                settings.id,
                run.record.error.as_deref().unwrap_or("failed")
            ));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// The communities a run covers: every configured community (or every community in the lake
/// when none is configured), or only `only`.
pub fn select_communities(
    config: &Config,
    lake: &Lake,
    only: Option<&str>,
) -> Result<Vec<CommunitySettings>> {
    let mut communities = config.communities();
    if communities.is_empty() {
        communities = lake
            .communities()?
            .iter()
            .map(|id| config.community(id))
            .collect();
    }
    if let Some(id) = only {
        communities.retain(|c| c.id == id);
        if communities.is_empty() {
            if !lake.communities()?.iter().any(|c| c == id) {
                return Err(Error::Usage(format!(
                    "community `{id}` is neither configured nor in the lake (see `pulse query \"SELECT DISTINCT community_id FROM events\"`)"
                )));
            }
            communities.push(config.community(id));
        }
    }
    Ok(communities)
}
