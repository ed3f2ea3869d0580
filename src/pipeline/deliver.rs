//! Delivery, the last stages of a run: write each report to the lake, queue it for its
//! recipients, flush the email queue (which also retries what earlier runs could not send) and
//! hand the ranked lists to the sinks.

use chrono::NaiveDate;

use crate::config::{CommunitySettings, Config};
use crate::error::Result;
use crate::lake::Lake;
use crate::report::{email, read, templates, write_report_from};
use crate::sinks;
use crate::state::StateDir;

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
    pub subject: String,
    /// A dry run's recipients: nothing was queued for them.
    pub would_email: Vec<String>,
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
        let queries = read::Queries::open(config, lake, settings, *as_of).await?;
        let written =
            write_report_from(&queries, lake, &templates, settings, None, options.late).await?;
        let (queued, already_sent) = if options.dry_run {
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
            subject: written.rendered.subject.clone(),
            would_email: if options.dry_run {
                settings.report_to.clone()
            } else {
                Vec::new()
            },
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
        let telemetry = crate::telemetry::get();
        for sink in &summary.sinks {
            telemetry.delivery(&sink.sink, sink.ok);
        }
        telemetry.emails("sent", summary.email.sent as u64);
        telemetry.emails("failed", summary.email.failed.len() as u64);
        telemetry.emails("rejected", summary.email.rejected.len() as u64);
    }
    Ok(summary)
}
