//! `pulse query`: read-only SQL over the lake's catalog (`events`, every metric table, the
//! rollups).

use std::path::PathBuf;

use super::output::{write_result, QueryFormat};
use super::{Ctx, Outcome};
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SQL query
    pub sql: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
    /// Write to this file instead of standard output (required for parquet)
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub fn cmd(args: Args, ctx: &Ctx) -> Result<Outcome> {
    let (config, lake) = (ctx.config()?, ctx.lake()?);
    let (schema, batches) = ctx.block_on(async {
        let ctx = crate::engine::session(&config.engine, lake).await?;
        crate::engine::query(&ctx, &args.sql).await
    })??;
    write_result(schema, &batches, args.format, args.output.as_deref())?;
    Ok(Outcome::Success)
}
