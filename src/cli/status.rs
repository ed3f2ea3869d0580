//! `pulse status`: the next scheduled runs of each community and the outcome of its last run.

use super::output::print_table;
use super::{Ctx, Outcome};
use crate::config::Config;
use crate::error::Result;
use crate::lake::Lake;
use crate::pipeline::history::{history, latest_runs, RunKind};
use crate::pipeline::select_communities;
use crate::schedule::next_fire;
use crate::state::StateDir;

pub fn cmd(ctx: &Ctx) -> Result<Outcome> {
    print_status(ctx.config()?, ctx.lake()?, chrono::Utc::now())?;
    Ok(Outcome::Success)
}

/// Next scheduled runs per community, and each one's last run.
fn print_status(config: &Config, lake: &Lake, now: chrono::DateTime<chrono::Utc>) -> Result<()> {
    let cron = config.report.schedule.schedule();
    let state = StateDir::new(&config.state_dir);
    let runs = latest_runs(history(&state).read()?);
    let communities = select_communities(config, lake, None)?;
    println!(
        "schedule `{}` (report.schedule), in each community's timezone",
        config.report.schedule
    );
    let mut rows: Vec<[String; 5]> = Vec::new();
    for c in &communities {
        let mut next = Vec::new();
        let mut after = now;
        for _ in 0..3 {
            match next_fire(cron, c.timezone, after) {
                Some(t) => {
                    next.push(
                        t.with_timezone(&c.timezone)
                            .format("%a %Y-%m-%d %H:%M %Z")
                            .to_string(),
                    );
                    after = t;
                }
                None => break,
            }
        }
        let last = runs
            .iter()
            .rev()
            .find(|r| r.community == c.id && r.kind != RunKind::Registered);
        rows.push([
            c.id.clone(),
            c.timezone.name().to_string(),
            next.join(" · "),
            last.map(|r| format!("{:?} as_of {} ({:?})", r.status, r.as_of, r.kind).to_lowercase())
                .unwrap_or_else(|| "no run yet".into()),
            last.and_then(|r| r.error.clone()).unwrap_or_default(),
        ]);
    }
    print_table(
        [
            "community",
            "timezone",
            "next runs",
            "last run",
            "last error",
        ],
        &rows,
    );
    Ok(())
}
