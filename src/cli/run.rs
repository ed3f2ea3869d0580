//! `pulse run`: every metric table for an as_of, then the report, email and ranked lists.

use super::{Ctx, Outcome};
use crate::config::{Config, EmailTransport};
use crate::error::{Error, Result};
use crate::pipeline::history::RunStatus;
use crate::pipeline::{DeliverOptions, DeliverySummary};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The as_of date D (YYYY-MM-DD): the run sees events before local midnight starting D
    /// [default: today in each community's timezone]
    #[arg(long)]
    pub as_of: Option<chrono::NaiveDate>,
    /// Only this community
    #[arg(long)]
    pub community: Option<String>,
    /// Email the report again to recipients who already received it for this as_of
    #[arg(long)]
    pub resend: bool,
    /// Deliver the ranked lists again to sinks that already received them
    #[arg(long)]
    pub redeliver: bool,
    /// Compute and write the metrics and the report, then say what would be emailed and
    /// delivered without sending anything
    #[arg(long)]
    pub dry_run: bool,
}

pub fn cmd(args: Args, ctx: &Ctx) -> Result<Outcome> {
    let (config, lake) = (ctx.config()?, ctx.lake()?);
    let runs = ctx.block_on(crate::pipeline::run_now(
        config,
        lake,
        args.as_of,
        args.community.as_deref(),
        DeliverOptions {
            resend: args.resend,
            redeliver: args.redeliver,
            dry_run: args.dry_run,
            late: false,
        },
    ))??;
    if runs.is_empty() {
        println!(
            "no communities: the lake has no events and none are configured (import events first)"
        );
        return Ok(Outcome::Success);
    }
    let mut ok = true;
    for run in &runs {
        ok &= run.ok();
        if let Some(m) = &run.models {
            let rows: Vec<String> = m.tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
            println!(
                "{} as_of {}: {} ({} of {} rollup partitions refreshed, {:.1}s)",
                m.community,
                m.window.as_of,
                rows.join(" · "),
                m.rollups.refreshed,
                m.rollups.partitions,
                m.seconds
            );
        }
        if let Some(summary) = &run.delivery {
            print_delivery(summary, config);
        }
        if run.record.status == RunStatus::Failed {
            eprintln!(
                "{} as_of {}: run failed: {}",
                run.record.community,
                run.record.as_of,
                run.record.error.as_deref().unwrap_or("")
            );
        }
    }
    // A run that failed outright is an error (status 1), as before the history existed.
    if let Some(failed) = runs.iter().find(|r| r.record.status == RunStatus::Failed) {
        return Err(Error::RunFailed {
            community: failed.record.community.clone(),
            as_of: failed.record.as_of,
            message: failed
                .record
                .error
                .clone()
                .unwrap_or_else(|| "failed".into()),
        });
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::DeliveryFailed
    })
}

/// Tell the user where each report went and what email did.
fn print_delivery(summary: &DeliverySummary, config: &Config) {
    for r in &summary.reports {
        for to in &r.would_email {
            println!("would email \"{}\" to {to}", r.subject);
        }
        let mut line = format!(
            "{} as_of {}: report {}/report.html",
            r.community, r.as_of, r.dir
        );
        if r.queued > 0 {
            line.push_str(&format!(" · emailed to {} recipient(s)", r.queued));
        }
        if r.already_sent > 0 {
            line.push_str(&format!(
                " · {} recipient(s) already had it (--resend to send again)",
                r.already_sent
            ));
        }
        println!("{line}");
    }
    let email = &summary.email;
    if email.sent > 0 && config.email.transport == EmailTransport::File {
        println!(
            "{} email(s) written to {}",
            email.sent,
            config.state_dir.join("outbox").display()
        );
    }
    for s in &summary.sinks {
        for planned in &s.planned {
            println!("{planned}");
        }
        let line = format!(
            "{} as_of {} → {}: {}",
            s.community, s.as_of, s.sink, s.detail
        );
        if s.ok {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    }
    for f in &email.failed {
        eprintln!("email not sent, still queued for the next run: {f}");
    }
    for r in &email.rejected {
        eprintln!(
            "email rejected by the server (moved to {}): {r}",
            config.state_dir.join("mail/rejected").display()
        );
    }
}
