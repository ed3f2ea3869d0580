//! `pulse forget MEMBER… [--community C] [--dry-run]`: erasure (SPEC §8).
//!
//! The steps, each safe to repeat, in an order that keeps the erasure whole if it is killed
//! part-way (running it again finishes it and changes nothing more):
//!
//! 1. the keyed hashes go into the lake's registry ([`super::forgotten`]) first, so from then on
//!    no import, export pickup or webhook brings the member back;
//! 2. the spool is imported into the lake (webhook events still waiting are filtered like any
//!    other import);
//! 3. every event partition holding the member is rewritten without their events, and with
//!    null where others' events name them as `target_member_id` (one directory swap per
//!    partition: readers see the old or the new partition, never half);
//! 4. quarantine files are rewritten without the lines that name them;
//! 5. every metric partition of every as_of of the affected communities is computed again (a
//!    clean recomputation without their events: others' scores, ranks and cohorts change as
//!    they would have without them), which also recomputes the rollups of the months that
//!    changed; stored reports are rendered again from the corrected tables; ranked-list files
//!    written by file sinks are written again;
//! 6. the member directory entry, queued report emails and outbox copies that name them go
//!    (queued reports are queued again from the re-rendered report);
//! 7. an erasure record (counts and hash prefixes, never the id) goes to the run history.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use datafusion::arrow::array::{Array, BooleanArray, StringArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;

use super::forgotten::Forgotten;
use crate::config::Config;
use crate::error::{IoContext, Result};
use crate::lake::Lake;
use crate::state::StateDir;

/// What an erasure did (or, dry, would do).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ForgetReport {
    pub members: usize,
    pub newly_recorded: usize,
    pub event_partitions: usize,
    pub events_removed: u64,
    pub targets_nulled: u64,
    pub quarantine_files: usize,
    pub quarantine_lines: u64,
    /// community → as_of dates recomputed.
    pub recomputed: BTreeMap<String, Vec<NaiveDate>>,
    pub reports: usize,
    pub ranked_list_files: usize,
    pub directory_entries: usize,
    pub mail_removed: usize,
    pub mail_requeued: usize,
}

impl ForgetReport {
    /// Whether anything (besides the registry) held the member.
    pub fn changed_data(&self) -> bool {
        self.event_partitions > 0
            || self.quarantine_lines > 0
            || self.directory_entries > 0
            || self.mail_removed > 0
    }

    /// The lines `pulse forget` prints.
    pub fn lines(&self, dry_run: bool) -> Vec<String> {
        let verb = if dry_run { "would" } else { "did" };
        let mut out = vec![format!(
            "{} member(s): {} newly recorded as forgotten (keyed hashes in the lake's _pulse/forgotten.json)",
            self.members, self.newly_recorded
        )];
        out.push(format!(
            "events: {} partition(s) rewritten, {} event(s) removed, {} target(s) set to null",
            self.event_partitions, self.events_removed, self.targets_nulled
        ));
        out.push(format!(
            "quarantine: {} file(s) rewritten, {} line(s) removed",
            self.quarantine_files, self.quarantine_lines
        ));
        for (community, dates) in &self.recomputed {
            out.push(format!(
                "metrics of {community}: {} as_of partition(s) computed again{}",
                dates.len(),
                match (dates.first(), dates.last()) {
                    (Some(a), Some(b)) => format!(" ({a} … {b})"),
                    _ => String::new(),
                }
            ));
        }
        out.push(format!(
            "reports rendered again: {} · ranked-list files written again: {}",
            self.reports, self.ranked_list_files
        ));
        out.push(format!(
            "member directory: {} entr(ies) removed · mail: {} queued/outbox copies removed, {} report(s) queued again",
            self.directory_entries, self.mail_removed, self.mail_requeued
        ));
        if dry_run {
            out.push(format!(
                "dry run: nothing was changed; this is what pulse forget {verb} not do yet"
            ));
        }
        out
    }
}

/// What to forget.
pub struct ForgetRequest<'a> {
    /// Member ids as given (identity-map aliases are resolved to their member too).
    pub members: &'a [String],
    pub community: Option<&'a str>,
    pub dry_run: bool,
}

/// Erase members from everything pulse keeps (see the module docs).
pub async fn forget(
    config: &Config,
    lake: &Lake,
    request: &ForgetRequest<'_>,
) -> Result<ForgetReport> {
    let state = StateDir::new(&config.state_dir);
    let ids = resolve_ids(config, request.members)?;
    let mut report = ForgetReport {
        members: ids.len(),
        ..Default::default()
    };
    let _run_lock = if request.dry_run {
        None
    } else {
        Some(crate::pipeline::history::RunLock::try_acquire(&state)?)
    };

    // 1. The registry, first.
    let mut registry = Forgotten::load_for_update(lake, &config.privacy.forget_key_env)?;
    let entries: Vec<_> = ids
        .iter()
        .map(|id| registry.entry(id, request.community))
        .collect();
    let hashes: Vec<String> = entries.iter().map(|e| e.hash[..12].to_string()).collect();
    if request.dry_run {
        let mut copy = registry.clone();
        report.newly_recorded = copy.add(entries);
    } else {
        report.newly_recorded = registry.add(entries);
        registry.save(lake)?;
        // 2. Webhook events still in the spool: imported now, filtered by the registry.
        tokio::task::block_in_place(|| {
            crate::spool::compact_from_outside(&state.root().join("spool"), lake)
        })?;
    }

    let communities: Vec<String> = match request.community {
        Some(c) => vec![c.to_string()],
        None => lake.communities()?,
    };
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();

    // 3. Events. The communities whose metrics must be computed again are recorded before any
    // partition changes, so a run killed after rewriting events still recomputes them when it
    // is run again (by then its events no longer name the member).
    let pending_file = state.root().join("forget-pending.json");
    let mut touched: BTreeSet<String> = std::fs::read(&pending_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut holding = Vec::new();
    for community in &communities {
        let (partitions, removed, nulled) =
            tokio::task::block_in_place(|| rewrite_events(lake, community, &wanted, true))?;
        if partitions > 0 {
            holding.push(community.clone());
            touched.insert(community.clone());
        }
        report.event_partitions += partitions;
        report.events_removed += removed;
        report.targets_nulled += nulled;
    }
    if !request.dry_run {
        if !touched.is_empty() {
            std::fs::create_dir_all(state.root())
                .io_context(|| format!("creating {}", state.root().display()))?;
            crate::lake::write_atomic(&pending_file, &serde_json::to_vec(&touched)?)?;
        }
        for community in &holding {
            tokio::task::block_in_place(|| rewrite_events(lake, community, &wanted, false))?;
        }
    }

    // 4. Quarantine.
    let (files, lines) = tokio::task::block_in_place(|| {
        rewrite_quarantine(lake, &wanted, request.community, request.dry_run)
    })?;
    report.quarantine_files = files;
    report.quarantine_lines = lines;

    // 5. Metrics, rollups, reports, ranked lists of every as_of of the affected communities.
    let templates = crate::report::templates(config)?;
    for community in &touched {
        let dates = crate::report::read::metric_dates(lake, community)?;
        if !request.dry_run {
            let Some(settings) =
                crate::pipeline::select_communities(config, lake, Some(community))?
                    .into_iter()
                    .next()
            else {
                continue;
            };
            for as_of in &dates {
                crate::models::run_community(config, lake, &settings, *as_of).await?;
                let report_dir = crate::lake::report_path(community, *as_of);
                if lake.exists(&format!("{report_dir}/report.html"))? {
                    let written = crate::report::write_report(
                        config, lake, &templates, &settings, *as_of, None,
                    )
                    .await?;
                    report.reports += 1;
                    report.mail_requeued +=
                        requeue_mail(config, &state, &settings, &written, &wanted)?;
                }
                report.ranked_list_files +=
                    crate::sinks::rewrite_files(config, lake, &settings, *as_of).await?;
            }
        }
        report.recomputed.insert(community.clone(), dates);
    }
    if !request.dry_run && pending_file.exists() {
        std::fs::remove_file(&pending_file)
            .io_context(|| format!("removing {}", pending_file.display()))?;
    }
    if !request.dry_run {
        // Replaced partitions are kept a minute for readers (`Lake::replace_dirs`); these hold
        // the member, so they go now.
        lake.remove_replaced(std::time::Duration::ZERO)?;
    }

    // 6. Directory (names are not per community: kept when the erasure is limited to one) and mail.
    if request.community.is_none() {
        if let Some(mut directory) = super::Directory::open_existing(&config.state_dir)? {
            report.directory_entries = if request.dry_run {
                directory.names(wanted.iter().copied())?.len()
            } else {
                directory.remove(&ids)?
            };
        }
    }
    report.mail_removed = remove_mail(&state, &wanted, request.community, request.dry_run)?;

    // 7. The erasure record.
    if !request.dry_run {
        let now = Utc::now();
        crate::pipeline::history::history(&state).append(
            &crate::pipeline::history::RunRecord {
                run_id: format!("{}-forget", now.format("%Y%m%dT%H%M%S%.3fZ")),
                kind: crate::pipeline::history::RunKind::Erasure,
                community: request.community.unwrap_or("*").to_string(),
                as_of: now.date_naive(),
                due_at: None,
                job: None,
                status: crate::pipeline::history::RunStatus::Succeeded,
                late: false,
                started_at: now,
                finished_at: Some(Utc::now()),
                stages: vec![crate::pipeline::history::Stage {
                    name: "forget".into(),
                    seconds: (Utc::now() - now).num_milliseconds() as f64 / 1000.0,
                    detail: format!(
                        "{} member(s) (keyed hashes {}…); {} events removed, {} targets nulled in {} partition(s); {} quarantine line(s); {} as_of partition(s) recomputed; {} report(s); {} directory entr(ies); {} mail copies",
                        ids.len(),
                        hashes.join(", "),
                        report.events_removed,
                        report.targets_nulled,
                        report.event_partitions,
                        report.quarantine_lines,
                        report.recomputed.values().map(Vec::len).sum::<usize>(),
                        report.reports,
                        report.directory_entries,
                        report.mail_removed,
                    ),
                }],
                error: None,
            },
        )?;
    }
    Ok(report)
}

/// The ids as given plus the member each identity-map alias names.
fn resolve_ids(config: &Config, given: &[String]) -> Result<Vec<String>> {
    let identities = crate::ingest::adapters::read_identities(&config.ingest)?;
    let mut ids = BTreeSet::new();
    for id in given {
        let id = id.trim();
        if id.is_empty() {
            continue;
        }
        ids.insert(id.to_string());
        ids.insert(identities.member(id));
    }
    if ids.is_empty() {
        return Err(crate::Error::Usage("name at least one member id".into()));
    }
    Ok(ids.into_iter().collect())
}

/// Rewrite the event partitions of `community` that hold any of `ids` (as actor or target).
/// Returns (partitions rewritten, events removed, targets nulled).
fn rewrite_events(
    lake: &Lake,
    community: &str,
    ids: &BTreeSet<&str>,
    dry_run: bool,
) -> Result<(usize, u64, u64)> {
    use crate::lake::compact::{rewrite_partitions, Rewrite};
    let mode = if dry_run {
        Rewrite::DryRun
    } else {
        Rewrite::Changed
    };
    rewrite_partitions(
        lake,
        community,
        |_, _| true,
        mode,
        |batch| without_members(batch, ids),
    )
}

/// `batch` without the rows whose member_id is in `ids`, and with null where target_member_id
/// is; with the counts of both.
fn without_members(batch: &RecordBatch, ids: &BTreeSet<&str>) -> Result<(RecordBatch, u64, u64)> {
    let strings = |name: &str| -> Option<StringArray> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
    };
    let Some(members) = strings("member_id") else {
        return Ok((batch.clone(), 0, 0));
    };
    let keep: BooleanArray = members
        .iter()
        .map(|m| Some(!m.is_some_and(|m| ids.contains(m))))
        .collect();
    let removed = keep.false_count() as u64;
    let mut batch = if removed > 0 {
        filter_record_batch(batch, &keep)?
    } else {
        batch.clone()
    };
    let mut nulled = 0;
    if let (Some(targets), Some(index)) = (
        strings("target_member_id").filter(|_| batch.column_by_name("target_member_id").is_some()),
        batch.schema().index_of("target_member_id").ok(),
    ) {
        // Re-read from the filtered batch (rows may have gone).
        let targets = batch
            .column(index)
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .unwrap_or(targets);
        let cleaned: StringArray = targets
            .iter()
            .map(|t| match t {
                Some(t) if ids.contains(t) => {
                    nulled += 1;
                    None
                }
                other => other,
            })
            .collect();
        if nulled > 0 {
            let mut columns = batch.columns().to_vec();
            columns[index] = Arc::new(cleaned);
            batch = RecordBatch::try_new(batch.schema(), columns)?;
        }
    }
    Ok((batch, removed, nulled))
}

/// Whether a line of JSON text names one of `ids` as a string value (and `community`, when
/// the erasure is limited to one).
fn names_any(line: &str, ids: &BTreeSet<&str>, community: Option<&str>) -> bool {
    // As a JSON string, or inside one (a quarantined line is kept as a string: `\"id\"`).
    let names = |s: &str| {
        let quoted = serde_json::to_string(s).unwrap_or_default();
        let escaped = serde_json::to_string(&quoted).unwrap_or_default();
        line.contains(&quoted) || line.contains(&escaped[1..escaped.len() - 1])
    };
    community.is_none_or(names) && ids.iter().any(|id| names(id))
}

/// Rewrite the quarantine files without the lines that name one of `ids`.
fn rewrite_quarantine(
    lake: &Lake,
    ids: &BTreeSet<&str>,
    community: Option<&str>,
    dry_run: bool,
) -> Result<(usize, u64)> {
    let files = lake.list_files(crate::lake::QUARANTINE)?;
    let (mut rewritten, mut removed) = (0, 0);
    for (file, bytes) in files.iter().zip(lake.read_many(&files)?) {
        let text = String::from_utf8_lossy(&bytes);
        let mut kept = String::with_capacity(text.len());
        let mut dropped = 0;
        for line in text.split_inclusive('\n') {
            if names_any(line, ids, community) {
                dropped += 1;
            } else {
                kept.push_str(line);
            }
        }
        if dropped == 0 {
            continue;
        }
        rewritten += 1;
        removed += dropped;
        if dry_run {
            continue;
        }
        if kept.is_empty() {
            lake.remove_file(file)?;
        } else {
            lake.write(file, kept.as_bytes())?;
        }
    }
    Ok((rewritten, removed))
}

/// Queued report emails and outbox copies that name one of `ids` (in `community`'s mail, when
/// the erasure is limited to one): removed. Returns how many.
fn remove_mail(
    state: &StateDir,
    ids: &BTreeSet<&str>,
    community: Option<&str>,
    dry_run: bool,
) -> Result<usize> {
    let mut removed = 0;
    for dir in [
        state.root().join("mail").join("queue"),
        state.root().join("mail").join("rejected"),
        state.root().join("outbox"),
    ] {
        removed += remove_files_naming(&dir, ids, community, dry_run)?;
    }
    Ok(removed)
}

fn remove_files_naming(
    dir: &Path,
    ids: &BTreeSet<&str>,
    community: Option<&str>,
    dry_run: bool,
) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            removed += remove_files_naming(&path, ids, community, dry_run)?;
            continue;
        }
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).io_context(|| format!("reading {}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        let in_community = community.is_none_or(|c| text.contains(c));
        if in_community && ids.iter().any(|id| text.contains(id)) {
            removed += 1;
            if !dry_run {
                std::fs::remove_file(&path)
                    .io_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    Ok(removed)
}

/// A re-rendered report whose queued copies named a forgotten member is queued again (the
/// copies themselves are removed by [`remove_mail`]); returns 1 when queued.
fn requeue_mail(
    config: &Config,
    state: &StateDir,
    settings: &crate::config::CommunitySettings,
    written: &crate::report::WrittenReport,
    ids: &BTreeSet<&str>,
) -> Result<usize> {
    let queue = state.root().join("mail").join("queue");
    let named = std::fs::read_dir(&queue)
        .map(|entries| {
            entries.flatten().any(|e| {
                std::fs::read(e.path())
                    .map(|b| {
                        let text = String::from_utf8_lossy(&b);
                        text.contains(&written.data.community_id)
                            && ids.iter().any(|id| text.contains(id))
                    })
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false);
    if !named {
        return Ok(0);
    }
    remove_files_naming(&queue, ids, Some(&settings.id), false)?;
    crate::report::email::enqueue(
        state,
        &config.report.from,
        &settings.report_to,
        &written.data,
        &written.rendered,
        true,
    )?;
    Ok(1)
}
