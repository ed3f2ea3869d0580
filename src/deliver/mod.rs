//! Delivery, after the models: the emailed report ([`report`] gathers its numbers from the
//! metric tables, [`render`] and [`charts`] turn them into HTML, text and PNG, [`email`] sends
//! them once) and the ranked member lists ([`sinks`]: files and signed webhooks). Run state in
//! `state_dir` (see [`crate::state`]) remembers what went out.

pub mod charts;
pub mod email;
pub mod render;
pub mod report;
pub mod sinks;

use std::path::PathBuf;

use chrono::NaiveDate;

use crate::config::{CommunitySettings, Config};
use crate::error::Result;
use crate::lake::Lake;
use crate::state::StateDir;
use render::Templates;

/// The report templates the config asks for (edited ones, or the built-in set).
pub fn templates(config: &Config) -> Result<Templates> {
    match &config.report.templates {
        Some(dir) => Templates::from_dir(dir),
        None => Ok(Templates::built_in()),
    }
}

/// A report written to the lake.
#[derive(Debug, Clone)]
pub struct WrittenReport {
    pub data: report::ReportData,
    pub rendered: render::Rendered,
    /// `<lake>/reports/<community>/<as_of>` (a path or URL), or the directory asked for.
    pub dir: String,
}

/// Gather and render the report of one community and as_of, and write it (report.html,
/// report.txt, the chart PNGs) to `out`, or to `<lake>/reports/<c>/<as_of>/`, replacing the
/// directory atomically.
pub async fn write_report(
    config: &Config,
    lake: &Lake,
    templates: &Templates,
    settings: &CommunitySettings,
    as_of: NaiveDate,
    out: Option<PathBuf>,
) -> Result<WrittenReport> {
    let queries = report::Queries::open(config, lake, settings, as_of).await?;
    write_report_from(&queries, lake, templates, settings, out, false).await
}

/// [`write_report`] with the queries already open.
async fn write_report_from(
    queries: &report::Queries,
    lake: &Lake,
    templates: &Templates,
    settings: &CommunitySettings,
    out: Option<PathBuf>,
    late: bool,
) -> Result<WrittenReport> {
    let as_of = queries.window.as_of;
    let mut data = report::gather(queries, settings).await?;
    data.late = late;
    let staging = lake
        .staging_dir()
        .join(format!("report-{}", crate::lake::unique_suffix()));
    let rendered = render::render(
        &data,
        settings.locale,
        settings.timezone,
        templates,
        &staging,
    )?;
    crate::lake::write_atomic(&staging.join("report.html"), rendered.html_files.as_bytes())?;
    crate::lake::write_atomic(&staging.join("report.txt"), rendered.text.as_bytes())?;
    // A preview (`--out`) goes to a local directory; a run's report into the lake.
    let dir = match out {
        Some(dir) => {
            crate::lake::replace_dir(&staging, &dir)?;
            dir.display().to_string()
        }
        None => {
            let rel = crate::lake::report_path(&settings.id, as_of);
            lake.replace_dirs(&[(staging, rel.clone())])?;
            lake.display(&rel)
        }
    };
    Ok(WrittenReport {
        data,
        rendered,
        dir,
    })
}

/// What delivery did for one run.
#[derive(Debug, Default)]
pub struct DeliverySummary {
    pub reports: Vec<ReportOutcome>,
    pub email: email::FlushStats,
    pub sinks: Vec<sinks::SinkOutcome>,
}

#[derive(Debug)]
pub struct ReportOutcome {
    pub community: String,
    pub as_of: NaiveDate,
    /// Where the report was written (a path, or a URL on an object-store lake).
    pub dir: String,
    /// Recipients queued now, and recipients that had been sent this report before.
    pub queued: usize,
    pub already_sent: usize,
}

impl DeliverySummary {
    /// True when nothing failed (every queued message was sent).
    pub fn ok(&self) -> bool {
        self.email.failed.is_empty()
            && self.email.rejected.is_empty()
            && self.sinks.iter().all(|s| s.ok)
    }
}

/// Options of a delivering run.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliverOptions {
    /// Email the report again to recipients who already received it.
    pub resend: bool,
    /// Deliver ranked lists again that were already delivered.
    pub redeliver: bool,
    /// Say what would be emailed and delivered; send and write nothing but the report.
    pub dry_run: bool,
    /// The report is a catch-up after downtime: it says so.
    pub late: bool,
}

/// After the models of `runs` (community, as_of): write each report to the lake, queue it for
/// its recipients and flush the email queue (which also retries what earlier runs could not send).
pub async fn deliver(
    config: &Config,
    lake: &Lake,
    runs: &[(CommunitySettings, NaiveDate)],
    options: DeliverOptions,
) -> Result<DeliverySummary> {
    let state = StateDir::new(&config.state_dir);
    let _lock = state.lock()?;
    let templates = templates(config)?;
    let mut summary = DeliverySummary::default();
    let sink_options = sinks::SinkOptions {
        redeliver: options.redeliver,
        dry_run: options.dry_run,
    };
    for (settings, as_of) in runs {
        let queries = report::Queries::open(config, lake, settings, *as_of).await?;
        let written =
            write_report_from(&queries, lake, &templates, settings, None, options.late).await?;
        let (queued, already_sent) = if options.dry_run {
            for to in &settings.report_to {
                println!("would email \"{}\" to {to}", written.rendered.subject);
            }
            (0, 0)
        } else {
            email::enqueue(
                &state,
                &config.report.from,
                &settings.report_to,
                &written.data,
                &written.rendered,
                options.resend,
            )?
        };
        summary.reports.push(ReportOutcome {
            community: settings.id.clone(),
            as_of: *as_of,
            dir: written.dir,
            queued,
            already_sent,
        });
        if !config.sinks.is_empty() {
            let list = sinks::RankedList::load(&queries, &settings.id).await?;
            summary
                .sinks
                .extend(sinks::deliver(&config.sinks, &state, &list, sink_options).await?);
        }
    }
    if !options.dry_run {
        summary.email = email::flush(&config.email, &state).await?;
    }
    Ok(summary)
}
