//! `pulse import`: canonical events (NDJSON or CSV), or a Slack / Discord export, into the lake.

use std::path::PathBuf;

use super::{Ctx, ImportFormat, Outcome};
use crate::error::{Error, Result};
use crate::ingest::files::InputFormat;
use crate::lake::events::{ImportStats, WriterOptions};
use crate::lake::Lake;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files to import
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Input format
    #[arg(long, value_enum, default_value_t = ImportFormat::Auto)]
    pub format: ImportFormat,
    /// The community of a Slack or Discord export, or of a table whose mapping does not map
    /// `community_id` (canonical events name their own)
    #[arg(long)]
    pub community: Option<String>,
    /// `--format table`: the mapping file saying how rows become events
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// `--format table`: print the first rows as they would be imported and the first rejected
    /// rows with their reasons; write nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Rows shown by `--dry-run`, imported and rejected each.
const DRY_RUN_ROWS: usize = 10;

pub fn cmd(args: Args, ctx: &Ctx) -> Result<Outcome> {
    if args.format != ImportFormat::Table && (args.mapping.is_some() || args.dry_run) {
        return Err(Error::Usage(
            "--mapping and --dry-run go with --format table".into(),
        ));
    }
    if args.format == ImportFormat::Table {
        ctx.config()?; // `[ingest] scrub_keys` count as personal in the mapping too
        let file = args
            .mapping
            .as_deref()
            .ok_or_else(|| Error::Usage("--format table needs --mapping MAPPING.toml".into()))?;
        let mapping = crate::ingest::table::Mapping::load(file)?;
        let files: Vec<(PathBuf, String)> = args
            .files
            .iter()
            .map(|p| (p.clone(), p.display().to_string()))
            .collect();
        if args.dry_run {
            let dry = crate::ingest::table::dry_run(
                &files,
                &mapping,
                args.community.as_deref(),
                DRY_RUN_ROWS,
            )?;
            println!("first events as they would be imported:");
            for e in &dry.events {
                println!("  {e}");
            }
            if dry.bad > 0 {
                println!("first rejected rows:");
                for r in &dry.rejected {
                    println!("  {r}");
                }
            }
            println!(
                "dry run: {} rows would be imported (before dedupe), {} rejected; nothing written",
                dry.good, dry.bad
            );
            return Ok(if dry.bad > 0 {
                Outcome::Quarantined
            } else {
                Outcome::Success
            });
        }
        let lake = ctx.lake()?;
        let started = std::time::Instant::now();
        let stats =
            crate::ingest::table::import(lake, &files, &mapping, args.community.as_deref())?;
        return summary(&stats, started, lake);
    }
    let (config, lake) = (ctx.config()?, ctx.lake()?);
    let started = std::time::Instant::now();
    let export = match args.format {
        ImportFormat::SlackExport => Some(crate::config::ExportFormat::SlackExport),
        ImportFormat::DiscordExport => Some(crate::config::ExportFormat::DiscordExport),
        _ => None,
    };
    let stats = match export {
        Some(export) => {
            let community = args.community.ok_or_else(|| {
                Error::Usage("a Slack or Discord export needs --community <id>".into())
            })?;
            crate::event::check_community_id(&community)
                .map_err(|e| Error::Usage(format!("--community: {e}")))?;
            let ids = crate::ingest::adapters::read_identities(&config.ingest)?;
            // Not in the lake's staging area: the importer clears that.
            let scratch = config.state_dir.join("tmp");
            let mut total = ImportStats::default();
            for file in &args.files {
                let source = crate::ingest::exports::Source {
                    format: export,
                    community: &community,
                    ids: &ids,
                    limits: crate::ingest::exports::ZipLimits::of(&config.ingest),
                    names_to: Some(&config.state_dir),
                    mapping: None,
                };
                let s = crate::ingest::exports::import_export(
                    lake,
                    file,
                    &file.display().to_string(),
                    &source,
                    &scratch,
                )?;
                total.read += s.read;
                total.imported += s.imported;
                total.duplicate += s.duplicate;
                total.quarantined += s.quarantined;
                total.forgotten += s.forgotten;
                total.files += s.files;
            }
            total
        }
        None => crate::ingest::files::import_files(
            lake,
            &args.files,
            match args.format {
                ImportFormat::Csv => InputFormat::Csv,
                ImportFormat::Ndjson => InputFormat::Ndjson,
                _ => InputFormat::Auto,
            },
            WriterOptions::default(),
        )?,
    };
    summary(&stats, started, lake)
}

/// The import's summary line, and its outcome.
fn summary(stats: &ImportStats, started: std::time::Instant, lake: &Lake) -> Result<Outcome> {
    let secs = started.elapsed().as_secs_f64();
    // Forgotten members' events (SPEC §8) are counted only when there were some.
    let forgotten = match stats.forgotten {
        0 => String::new(),
        n => format!(" · forgotten {n}"),
    };
    println!(
        "read {} · imported {} · duplicate {} · quarantined {}{forgotten} · {} files · {:.1}s ({:.0} events/s)",
        stats.read,
        stats.imported,
        stats.duplicate,
        stats.quarantined,
        stats.files,
        secs,
        stats.read as f64 / secs.max(1e-9)
    );
    if stats.quarantined > 0 {
        eprintln!(
            "{} line(s) quarantined: see {} (each line has the file, line number and reason)",
            stats.quarantined,
            lake.display(crate::lake::QUARANTINE)
        );
        return Ok(Outcome::Quarantined);
    }
    Ok(Outcome::Success)
}
