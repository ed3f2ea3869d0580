//! `pulse taxonomy`: help with the demand taxonomy (SPEC §4.6). `suggest` prints the emerging
//! topics of the lake as keyword lines to paste into the config.

use super::context::{lake_communities, metrics_day};
use super::{Ctx, Outcome};
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: TaxonomyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TaxonomyCommand {
    /// Print the emerging topics (words members use that no keyword covers) as TOML keyword
    /// lines, each under the category whose posts use it most, or in a commented-out new
    /// category. Reads the `emerging_terms` of a `pulse run`.
    Suggest {
        /// Only this community [default: every community in the lake]
        #[arg(long)]
        community: Option<String>,
        /// The as_of whose metrics to read [default: the latest one, per community]
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// Terms per taxonomy
        #[arg(long, default_value_t = 10)]
        top: u32,
    },
}

pub fn cmd(args: Args, ctx: &Ctx) -> Result<Outcome> {
    let TaxonomyCommand::Suggest {
        community,
        as_of,
        top,
    } = args.command;
    let (config, lake) = (ctx.config()?, ctx.lake()?);
    for id in lake_communities(lake, community.as_deref())? {
        let Some(day) = metrics_day(lake, &id, as_of)? else {
            continue;
        };
        let settings = config.community(&id);
        let text = ctx.block_on(crate::report::suggest::suggestions(
            config, lake, &settings, day, top,
        ))??;
        print!("{text}");
    }
    Ok(Outcome::Success)
}
