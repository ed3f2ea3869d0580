//! `pulse forget MEMBER… [--community C] [--dry-run]`: erasure (SPEC §8, [`crate::privacy::forget`]).

use super::{Ctx, Outcome};
use crate::error::Result;
use crate::privacy::forget::{forget, ForgetRequest};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Member ids (an identity-map alias erases the member it names too)
    #[arg(required = true)]
    pub members: Vec<String>,
    /// Only in this community
    #[arg(long)]
    pub community: Option<String>,
    /// Show what would change, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub fn cmd(args: Args, ctx: &Ctx) -> Result<Outcome> {
    let config = ctx.config()?;
    let lake = ctx.lake()?;
    let request = ForgetRequest {
        members: &args.members,
        community: args.community.as_deref(),
        dry_run: args.dry_run,
    };
    let report = ctx.block_on(forget(config, lake, &request))??;
    for line in report.lines(args.dry_run) {
        println!("{line}");
    }
    Ok(Outcome::Success)
}
