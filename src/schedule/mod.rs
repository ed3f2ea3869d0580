//! The schedule: when runs are due (cron in each community's timezone), what a run does (the
//! pipeline), and what runs did (history in `<state_dir>/runs.jsonl`).
//!
//! - [`fires_between`] evaluates a cron expression on the community's wall clock: a time that
//!   does not exist (a DST gap) fires once at the first instant after the gap, a time that
//!   happens twice (a DST repeat) fires once, at its first occurrence.
//! - [`plan`] decides which as_of dates are due at `now` from the history: fires since the last
//!   successful one, oldest first, at most `report.catch_up` of them (the most recent), each
//!   retried on later ticks until it succeeds or has failed `report.max_attempts` times, so a
//!   failing day never blocks the days after it. Fires before the community was first
//!   scheduled are not due (a new install does not replay the past).
//! - [`run_pipeline`] runs the stages for one community and as_of (models, then report, email
//!   and ranked lists) and records the run, its stages, durations, row counts and outcome.
//! - [`RunLock`] keeps runs from overlapping, across processes: an OS lock on
//!   `<state_dir>/run.lock`, released by the kernel when its holder dies, so a crashed process
//!   never leaves it stuck.
//!
//! Everything here takes `now` as an argument: the clock is injected, and tests move it.

pub mod serve;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::config::{CommunitySettings, Config};
use crate::deliver::{DeliverOptions, DeliverySummary};
use crate::error::{Error, IoContext, Result};
use crate::lake::Lake;
use crate::state::StateDir;

/// A parsed cron expression (six or seven fields, seconds first).
pub fn parse_cron(text: &str) -> Result<cron::Schedule> {
    text.parse().map_err(|e| {
        Error::Usage(format!(
            "`{text}` is not a cron expression with seconds: {e}"
        ))
    })
}

/// The instant a local wall-clock time means in `tz`: itself; the first of two in a DST repeat;
/// the first instant after a DST gap.
fn instant_of(wall: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    (0..=180)
        .find_map(|minutes| {
            tz.from_local_datetime(&(wall + Duration::minutes(minutes)))
                .earliest()
        })
        .expect("a DST gap is shorter than three hours")
        .with_timezone(&Utc)
}

/// Every instant in `(after, until]` at which `cron`, read on the wall clock of `tz`, fires.
pub fn fires_between(
    cron: &cron::Schedule,
    tz: Tz,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    // Walk the wall clock (as if it were UTC) from a little before `after`, so a repeated hour
    // or a gap just before it is seen, and map each wall time to its instant.
    let start_wall = after.with_timezone(&tz).naive_local() - Duration::hours(3);
    let mut fires: Vec<DateTime<Utc>> = Vec::new();
    for wall in cron.after(&Utc.from_utc_datetime(&start_wall)) {
        let instant = instant_of(wall.naive_utc(), tz);
        if instant > until {
            // Wall time and instants are monotonic up to a DST shift of a few hours.
            if instant > until + Duration::hours(3) {
                break;
            }
            continue;
        }
        if instant > after && fires.last() != Some(&instant) {
            fires.push(instant);
        }
    }
    fires.sort();
    fires.dedup();
    fires
}

/// The next fire after `after`, if the expression ever fires again (within ten years).
pub fn next_fire(cron: &cron::Schedule, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut from = after;
    for _ in 0..40 {
        let until = from + Duration::days(92);
        if let Some(first) = fires_between(cron, tz, from, until).first() {
            return Some(*first);
        }
        from = until;
    }
    None
}

/// The as_of of a run fired at `at`: the community's local date then (the run covers the days
/// before it).
pub fn as_of_for(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

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

/// A run that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub community: String,
    pub as_of: NaiveDate,
    pub due_at: DateTime<Utc>,
    /// Due before the latest fire (a catch-up after downtime): the report says it is late.
    pub late: bool,
}

/// Scheduling limits (from `[report]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// At most this many missed fires are run after downtime (the most recent ones).
    pub catch_up: usize,
    /// A fire that failed this many times is given up.
    pub max_attempts: usize,
}

/// The runs due at `now` for one community, oldest first.
pub fn plan(
    cron: &cron::Schedule,
    settings: &CommunitySettings,
    runs: &[RunRecord],
    now: DateTime<Utc>,
    limits: Limits,
) -> Vec<Due> {
    let mine: Vec<&RunRecord> = runs.iter().filter(|r| r.community == settings.id).collect();
    let Some(registered) = mine
        .iter()
        .filter(|r| r.kind == RunKind::Registered)
        .map(|r| r.started_at)
        .min()
    else {
        return Vec::new();
    };
    let done = |at: DateTime<Utc>| {
        let attempts: Vec<&&RunRecord> = mine
            .iter()
            .filter(|r| r.kind == RunKind::Scheduled && r.due_at == Some(at))
            .collect();
        attempts.iter().any(|r| r.status == RunStatus::Succeeded)
            || attempts
                .iter()
                .filter(|r| matches!(r.status, RunStatus::Failed | RunStatus::Abandoned))
                .count()
                >= limits.max_attempts
    };
    let fires = fires_between(cron, settings.timezone, registered, now);
    let latest = fires.last().copied();
    // One run per as_of: the latest fire of each local date.
    let mut by_day: BTreeMap<NaiveDate, DateTime<Utc>> = BTreeMap::new();
    for at in fires {
        by_day.insert(as_of_for(at, settings.timezone), at);
    }
    let mut due: Vec<Due> = by_day
        .into_iter()
        .filter(|(_, at)| !done(*at))
        .map(|(as_of, at)| Due {
            community: settings.id.clone(),
            as_of,
            due_at: at,
            late: Some(at) != latest,
        })
        .collect();
    if due.len() > limits.catch_up {
        due.drain(..due.len() - limits.catch_up);
    }
    due
}

/// Record that the scheduler has seen each community, the first time it does; returns the
/// communities seen for the first time.
pub fn register<'a>(
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

/// The cross-process run lock (see the module docs). Its file holds the holder's pid and start
/// time, for the message a second process prints.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Take the lock, or say who holds it.
    pub fn try_acquire(state: &StateDir) -> Result<std::result::Result<RunLock, String>> {
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
            return Ok(Err(holder.trim().to_string()));
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
        Ok(Ok(RunLock { _file: file }))
    }
}

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
/// it is named in the stage and tried again next time.
pub fn intake(config: &Config, lake: &Lake) -> Result<Vec<Stage>> {
    let state = StateDir::new(&config.state_dir);
    let mut stages = Vec::new();
    let clock = std::time::Instant::now();
    let picked = crate::ingest::exports::pickup(config, lake, &state)?;
    if picked.files > 0 || !picked.failed.is_empty() {
        let mut detail = format!(
            "{} file(s), {} events imported",
            picked.files, picked.imported
        );
        if !picked.failed.is_empty() {
            detail.push_str(&format!(
                "; not imported (retried next run): {}",
                picked.failed.join("; ")
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
                "{} imported, {} duplicate, {} quarantined",
                moved.imported, moved.duplicate, moved.quarantined
            ),
        });
    }
    Ok(stages)
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
        let summary =
            crate::deliver::deliver(config, lake, &[(settings.clone(), as_of)], deliver).await?;
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
            record.error = Some(e.to_string());
        }
    }
    ledger.append(&record)?;
    Ok(PipelineRun {
        record,
        models,
        delivery,
    })
}

/// `pulse run` (and `pulse demo`): the pipeline now, for each selected community, at `as_of`
/// (default: today in each community's timezone), one after the other. Returns `Err` with the
/// holder when another run is in progress.
pub async fn run_now(
    config: &Config,
    lake: &Lake,
    as_of: Option<NaiveDate>,
    only: Option<&str>,
    deliver: DeliverOptions,
) -> Result<std::result::Result<Vec<PipelineRun>, String>> {
    let state = StateDir::new(&config.state_dir);
    let _lock = match RunLock::try_acquire(&state)? {
        Ok(lock) => lock,
        Err(holder) => return Ok(Err(holder)),
    };
    // Intake first: it may bring the first events of a community into the lake.
    let mut intake_stages = if deliver.dry_run {
        Vec::new()
    } else {
        tokio::task::block_in_place(|| intake(config, lake))?
    };
    let communities = crate::models::select_communities(config, lake, only)?;
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
    Ok(Ok(runs))
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
) -> Result<std::result::Result<BackfillOutcome, String>> {
    let started = std::time::Instant::now();
    let communities =
        crate::models::select_communities(config, lake, options.community.as_deref())?;
    let state = StateDir::new(&config.state_dir);
    let _lock = match RunLock::try_acquire(&state)? {
        Ok(lock) => lock,
        Err(holder) => return Ok(Err(holder)),
    };
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
    Ok(Ok(outcome))
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

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn settings(tz: &str) -> CommunitySettings {
        let mut s = Config::default_config().community("c1");
        s.timezone = tz.parse().unwrap();
        s
    }

    fn registered(at: &str) -> RunRecord {
        RunRecord {
            run_id: "registered-c1".into(),
            kind: RunKind::Registered,
            community: "c1".into(),
            as_of: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            due_at: None,
            job: None,
            status: RunStatus::Succeeded,
            late: false,
            started_at: utc(at),
            finished_at: None,
            stages: Vec::new(),
            error: None,
        }
    }

    const LIMITS: Limits = Limits {
        catch_up: 4,
        max_attempts: 3,
    };

    #[test]
    fn monday_nine_is_nine_in_each_community() {
        let cron = parse_cron("0 0 9 * * Mon").unwrap();
        let after = utc("2026-11-20T00:00:00Z");
        let until = utc("2026-11-25T00:00:00Z");
        let shanghai = fires_between(&cron, "Asia/Shanghai".parse().unwrap(), after, until);
        assert_eq!(shanghai, [utc("2026-11-23T01:00:00Z")]);
        let new_york = fires_between(&cron, "America/New_York".parse().unwrap(), after, until);
        assert_eq!(new_york, [utc("2026-11-23T14:00:00Z")]);
        assert_eq!(
            as_of_for(shanghai[0], "Asia/Shanghai".parse().unwrap()),
            NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
        );
    }

    #[test]
    fn dst_gaps_and_repeats_fire_once() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2026-03-08 02:30 does not exist in New York (02:00 → 03:00): it fires at 03:00 EDT.
        let daily = parse_cron("0 30 2 * * *").unwrap();
        let fires = fires_between(
            &daily,
            ny,
            utc("2026-03-07T12:00:00Z"),
            utc("2026-03-09T12:00:00Z"),
        );
        assert_eq!(
            fires,
            [utc("2026-03-08T07:00:00Z"), utc("2026-03-09T06:30:00Z")]
        );
        // 2026-11-01 01:30 happens twice (EDT, then EST): it fires once, at the first.
        let repeat = parse_cron("0 30 1 * * *").unwrap();
        let fires = fires_between(
            &repeat,
            ny,
            utc("2026-10-31T12:00:00Z"),
            utc("2026-11-02T12:00:00Z"),
        );
        assert_eq!(
            fires,
            [utc("2026-11-01T05:30:00Z"), utc("2026-11-02T06:30:00Z")]
        );
        // Every 30 minutes through the repeated hour: 01:00, 01:30 once each, then 02:00 EST.
        let half_hourly = parse_cron("0 0/30 * * * *").unwrap();
        let fires = fires_between(
            &half_hourly,
            ny,
            utc("2026-11-01T04:45:00Z"),
            utc("2026-11-01T07:15:00Z"),
        );
        assert_eq!(
            fires,
            [
                utc("2026-11-01T05:00:00Z"),
                utc("2026-11-01T05:30:00Z"),
                utc("2026-11-01T07:00:00Z")
            ]
        );
        // A zone without DST never skips or repeats.
        let sh = fires_between(
            &daily,
            "Asia/Shanghai".parse().unwrap(),
            utc("2026-03-07T00:00:00Z"),
            utc("2026-03-10T00:00:00Z"),
        );
        assert_eq!(sh.len(), 3);
    }

    #[test]
    fn nothing_is_due_before_registration_or_after_success() {
        let cron = parse_cron("0 0 9 * * *").unwrap();
        let s = settings("UTC");
        let now = utc("2026-11-23T10:00:00Z");
        assert!(plan(&cron, &s, &[], now, LIMITS).is_empty());
        let runs = vec![registered("2026-11-23T08:00:00Z")];
        let due = plan(&cron, &s, &runs, now, LIMITS);
        assert_eq!(due.len(), 1);
        assert!(!due[0].late);
        let mut done = registered("2026-11-23T09:00:01Z");
        done.run_id = "r1".into();
        done.kind = RunKind::Scheduled;
        done.due_at = Some(due[0].due_at);
        let runs = vec![runs[0].clone(), done];
        assert!(plan(&cron, &s, &runs, now, LIMITS).is_empty());
    }

    #[test]
    fn catch_up_runs_missed_days_oldest_first_up_to_the_limit_marked_late() {
        let cron = parse_cron("0 0 9 * * *").unwrap();
        let s = settings("Asia/Shanghai");
        let runs = vec![registered("2026-11-01T00:00:00Z")];
        // Down from the 1st to the 23rd 10:00 Shanghai: 23 fires missed, the last 4 are run.
        let due = plan(&cron, &s, &runs, utc("2026-11-23T02:00:00Z"), LIMITS);
        let days: Vec<String> = due.iter().map(|d| d.as_of.to_string()).collect();
        assert_eq!(
            days,
            ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]
        );
        assert_eq!(
            due.iter().map(|d| d.late).collect::<Vec<_>>(),
            [true, true, true, false]
        );
    }

    #[test]
    fn a_failing_day_is_retried_then_given_up() {
        let cron = parse_cron("0 0 9 * * *").unwrap();
        let s = settings("UTC");
        let mut runs = vec![registered("2026-11-22T00:00:00Z")];
        let now = utc("2026-11-22T10:00:00Z");
        for attempt in 0..3 {
            let due = plan(&cron, &s, &runs, now, LIMITS);
            assert_eq!(due.len(), 1, "attempt {attempt}");
            let mut failed = registered("2026-11-22T09:00:00Z");
            failed.run_id = format!("f{attempt}");
            failed.kind = RunKind::Scheduled;
            failed.status = RunStatus::Failed;
            failed.due_at = Some(due[0].due_at);
            runs.push(failed);
        }
        assert!(plan(&cron, &s, &runs, now, LIMITS).is_empty());
        // The next day is due regardless.
        assert_eq!(
            plan(&cron, &s, &runs, utc("2026-11-23T10:00:00Z"), LIMITS).len(),
            1
        );
    }

    #[test]
    fn latest_record_of_each_run_wins() {
        let mut a = registered("2026-11-22T00:00:00Z");
        a.run_id = "a".into();
        a.status = RunStatus::Running;
        let mut a2 = a.clone();
        a2.status = RunStatus::Succeeded;
        let mut b = a.clone();
        b.run_id = "b".into();
        let runs = latest_runs(vec![a, b, a2]);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].status, RunStatus::Succeeded);
    }
}
