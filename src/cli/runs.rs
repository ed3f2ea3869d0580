//! `pulse runs`: the run history, newest last.

use super::output::print_table;
use super::{Ctx, Outcome};
use crate::error::Result;
use crate::pipeline::history::{history, latest_runs, RunKind};
use crate::state::StateDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this community
    #[arg(long)]
    pub community: Option<String>,
    /// Show at most this many (the newest)
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

pub fn cmd(args: Args, ctx: &Ctx) -> Result<Outcome> {
    let state = StateDir::new(&ctx.config()?.state_dir);
    print_runs(&state, args.community.as_deref(), args.limit)?;
    Ok(Outcome::Success)
}

/// The run history as a table.
fn print_runs(state: &StateDir, community: Option<&str>, limit: usize) -> Result<()> {
    let runs: Vec<_> = latest_runs(history(state).read()?)
        .into_iter()
        .filter(|r| r.kind != RunKind::Registered)
        .filter(|r| community.is_none_or(|c| c == r.community))
        .collect();
    if runs.is_empty() {
        println!("no runs yet ({})", state.root().display());
        return Ok(());
    }
    let shown = &runs[runs.len().saturating_sub(limit)..];
    let rows: Vec<[String; 8]> = shown
        .iter()
        .map(|r| {
            let secs = r
                .finished_at
                .map(|f| {
                    format!(
                        "{:.1}",
                        (f - r.started_at).num_milliseconds() as f64 / 1000.0
                    )
                })
                .unwrap_or_default();
            [
                r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                format!("{:?}", r.kind).to_lowercase(),
                r.community.clone(),
                format!("{}{}", r.as_of, if r.late { " (late)" } else { "" }),
                format!("{:?}", r.status).to_lowercase(),
                secs,
                r.stages
                    .iter()
                    .map(|s| format!("{} {:.1}s", s.name, s.seconds))
                    .collect::<Vec<_>>()
                    .join(", "),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        [
            "started (UTC)",
            "kind",
            "community",
            "as_of",
            "outcome",
            "seconds",
            "stages",
            "error",
        ],
        &rows,
    );
    Ok(())
}
