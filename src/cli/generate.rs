//! `pulse generate`: a realistic synthetic community as canonical NDJSON.

use std::io::Write;
use std::path::PathBuf;

use super::Outcome;
use crate::error::{IoContext, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Members per community
    #[arg(long, default_value_t = 1000)]
    pub members: u32,
    /// Days of history
    #[arg(long, default_value_t = 120)]
    pub days: u32,
    /// Number of communities
    #[arg(long, default_value_t = 1)]
    pub communities: u32,
    /// Random seed (the same seed and end date give the same file)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First day after the generated period, YYYY-MM-DD [default: today, UTC]
    #[arg(long)]
    pub end: Option<chrono::NaiveDate>,
    /// Output file (`-` for standard output)
    #[arg(long)]
    pub out: PathBuf,
}

pub fn cmd(args: Args) -> Result<Outcome> {
    let options = crate::generate::GenerateOptions {
        members: args.members,
        days: args.days,
        communities: args.communities.max(1),
        seed: args.seed,
        end: args.end.unwrap_or_else(|| chrono::Utc::now().date_naive()),
    };
    let out = &args.out;
    let written = if out.as_os_str() == "-" {
        crate::generate::generate(&options, &mut std::io::stdout().lock())?
    } else {
        let file =
            std::fs::File::create(out).io_context(|| format!("creating {}", out.display()))?;
        let mut w = std::io::BufWriter::new(file);
        let n = crate::generate::generate(&options, &mut w)?;
        w.flush()
            .io_context(|| format!("writing {}", out.display()))?;
        n
    };
    eprintln!("wrote {written} events to {}", out.display());
    Ok(Outcome::Success)
}
