//! `pulse members`: the member directory (SPEC §8) — display names kept apart from the lake.

use std::path::PathBuf;

use super::output::print_table;
use super::{Ctx, Outcome};
use crate::error::{Error, Result};
use crate::privacy::directory::{read_names_csv, Directory};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: MembersCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum MembersCommand {
    /// Read `member_id,display_name` rows from a CSV file (UTF-8, with or without BOM, or
    /// GBK/GB18030 as Excel saves it); a header row is optional. Names imported this way are
    /// not overwritten by names adapters see later.
    Import { file: PathBuf },
    /// Set one member's display name.
    Set {
        member_id: String,
        display_name: String,
    },
    /// List the directory (member_id, display_name, source, learned_at).
    List {
        /// Only members with events in this community
        #[arg(long)]
        community: Option<String>,
    },
}

pub fn cmd(args: Args, ctx: &Ctx) -> Result<Outcome> {
    let config = ctx.config()?;
    let identities = crate::ingest::adapters::read_identities(&config.ingest)?;
    match args.command {
        MembersCommand::Import { file } => {
            let (rows, skipped) = read_names_csv(&file)?;
            // An alias (stripe:cus_1) names the member it belongs to.
            let rows: Vec<(String, String)> = rows
                .into_iter()
                .map(|(id, name)| (identities.member(&id), name))
                .collect();
            let mut directory = Directory::open(&config.state_dir)?;
            let changed = directory.set(&rows, "import")?;
            println!(
                "read {} name(s) · {changed} new or changed · {skipped} row(s) without an id or a name skipped · {}",
                rows.len(),
                Directory::path_in(&config.state_dir).display()
            );
        }
        MembersCommand::Set {
            member_id,
            display_name,
        } => {
            let id = identities.member(member_id.trim());
            if id.is_empty() {
                return Err(Error::Usage("the member id is empty".into()));
            }
            if crate::privacy::directory::clean_name(&display_name).is_none() {
                return Err(Error::Usage("the display name is empty".into()));
            }
            let mut directory = Directory::open(&config.state_dir)?;
            directory.set(&[(id.clone(), display_name)], "set")?;
            println!("{id}: {}", directory.name(&id)?.unwrap_or_default());
        }
        MembersCommand::List { community } => {
            let Some(directory) = Directory::open_existing(&config.state_dir)? else {
                println!(
                    "the member directory is empty ({})",
                    Directory::path_in(&config.state_dir).display()
                );
                return Ok(Outcome::Success);
            };
            let mut entries = directory.list()?;
            if let Some(community) = community {
                let seen = members_of(ctx, &community)?;
                entries.retain(|e| seen.contains(&e.member_id));
            }
            let rows: Vec<[String; 4]> = entries
                .into_iter()
                .map(|e| [e.member_id, e.display_name, e.source, e.learned_at])
                .collect();
            print_table(["member_id", "display_name", "source", "learned_at"], &rows);
        }
    }
    Ok(Outcome::Success)
}

/// The members with any event in `community`.
fn members_of(ctx: &Ctx, community: &str) -> Result<std::collections::HashSet<String>> {
    let config = ctx.config()?;
    let lake = ctx.lake()?;
    ctx.block_on(async {
        let session = crate::engine::session(&config.engine, lake).await?;
        let df = session
            .sql("SELECT DISTINCT member_id FROM events WHERE community_id = $1")
            .await?
            .with_param_values(vec![datafusion::common::ScalarValue::Utf8(Some(
                community.to_string(),
            ))])?;
        let mut out = std::collections::HashSet::new();
        for batch in df.collect().await? {
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .cloned();
            if let Some(ids) = ids {
                out.extend(ids.iter().flatten().map(str::to_string));
            }
        }
        Ok::<_, Error>(out)
    })?
}
