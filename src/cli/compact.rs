//! `pulse compact [--community C] [--before D]`: merge each event partition's files into one
//! ([`crate::lake::compact`]).

use super::context::lake_communities;
use super::{Ctx, Outcome};
use crate::error::Result;
use crate::lake::compact::{compact, CompactOptions};
use crate::pipeline::history::RunLock;
use crate::state::StateDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this community
    #[arg(long)]
    pub community: Option<String>,
    /// Only partitions of UTC days before this date (YYYY-MM-DD)
    #[arg(long)]
    pub before: Option<chrono::NaiveDate>,
}

pub fn cmd(args: Args, ctx: &Ctx) -> Result<Outcome> {
    let (config, lake) = (ctx.config()?, ctx.lake()?);
    if let Some(c) = &args.community {
        lake_communities(lake, Some(c))?;
    }
    // Not during a run or an erasure: they read partitions this replaces.
    let _run = RunLock::try_acquire(&StateDir::new(&config.state_dir))?;
    let options = CompactOptions {
        community: args.community,
        before: args.before,
        above_files: 1,
    };
    let stats = compact(lake, &options)?;
    println!(
        "compacted {} partition(s): {} files → {} · {} events",
        stats.partitions, stats.files_before, stats.partitions, stats.events
    );
    Ok(Outcome::Success)
}
