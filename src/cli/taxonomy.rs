//! `pulse taxonomy`: help with the demand taxonomy (SPEC §4.6). `suggest` prints the emerging
//! topics of the lake as keyword lines to paste into the config.

use super::{Ctx, Outcome};
use crate::error::{Error, Result};

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
    let mut communities = lake.communities()?;
    if let Some(only) = &community {
        communities.retain(|c| c == only);
        if communities.is_empty() {
            return Err(Error::Usage(format!(
                "community `{only}` has no events in the lake"
            )));
        }
    }
    for id in communities {
        let day = match as_of {
            Some(d) => d,
            None => match crate::report::read::metric_dates(lake, &id)?.last() {
                Some(d) => *d,
                None => {
                    eprintln!("{id}: no metrics yet (run `pulse run` first); skipped");
                    continue;
                }
            },
        };
        let settings = config.community(&id);
        let text = ctx.block_on(crate::report::suggest::suggestions(
            config, lake, &settings, day, top,
        ))??;
        print!("{text}");
    }
    Ok(Outcome::Success)
}
