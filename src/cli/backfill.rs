//! `pulse backfill`: every as_of of a range, resumably.

use std::io::IsTerminal;

use super::{Ctx, Outcome};
use crate::error::{Error, Result};
use crate::pipeline::BackfillOptions;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// First as_of (YYYY-MM-DD)
    #[arg(long)]
    pub from: chrono::NaiveDate,
    /// Last as_of, inclusive
    #[arg(long)]
    pub to: chrono::NaiveDate,
    /// Only this community
    #[arg(long)]
    pub community: Option<String>,
    /// Also write the reports, email them and deliver the ranked lists
    #[arg(long)]
    pub send: bool,
    /// Recompute as_of dates this backfill already finished
    #[arg(long)]
    pub restart: bool,
}

pub fn cmd(args: Args, ctx: &Ctx) -> Result<Outcome> {
    let (from, to) = (args.from, args.to);
    if to < from {
        return Err(Error::Usage(format!("--to {to} is before --from {from}")));
    }
    let (config, lake) = (ctx.config()?, ctx.lake()?);
    let b = ctx.block_on(crate::pipeline::backfill(
        config,
        lake,
        &BackfillOptions {
            from,
            to,
            community: args.community,
            send: args.send,
            restart: args.restart,
            progress: !ctx.quiet() && std::io::stderr().is_terminal(),
        },
    ))??;
    println!(
        "backfill {from} … {to}: {} computed, {} already done, {} failed ({:.1}s)",
        b.computed,
        b.skipped,
        b.failed.len(),
        b.seconds
    );
    for f in &b.failed {
        eprintln!("failed: {f}");
    }
    Ok(if b.failed.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}
