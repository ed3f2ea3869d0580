//! `pulse deliveries`: what was emailed and delivered, newest last; `--enable` re-enables a
//! webhook sink that a 410 disabled.

use super::output::print_table;
use super::{Ctx, Outcome};
use crate::error::Result;
use crate::report::email::EmailRecord;
use crate::sinks;
use crate::state::StateDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this community
    #[arg(long)]
    pub community: Option<String>,
    /// Re-enable a webhook sink that was disabled by a 410 Gone answer
    #[arg(long, value_name = "URL")]
    pub enable: Option<String>,
}

pub fn cmd(args: Args, ctx: &Ctx) -> Result<Outcome> {
    let state = StateDir::new(&ctx.config()?.state_dir);
    if let Some(url) = args.enable {
        let _lock = state.lock()?;
        let shown = sinks::redact_url(&url);
        if sinks::enable(&state, &url)? {
            println!("webhook sink {shown} enabled: the next run delivers to it again");
        } else {
            println!("webhook sink {shown} is not disabled");
        }
        return Ok(Outcome::Success);
    }
    print_deliveries(&state, args.community.as_deref())?;
    Ok(Outcome::Success)
}

/// The delivery history as a table: emails, then ranked-list deliveries.
fn print_deliveries(state: &StateDir, community: Option<&str>) -> Result<()> {
    let keep = |c: &str| community.is_none_or(|only| only == c);
    let mut rows: Vec<[String; 8]> = Vec::new();
    let emails: Vec<EmailRecord> = state.ledger("emails").read()?;
    for r in emails.into_iter().filter(|r| keep(&r.community)) {
        rows.push([
            r.at,
            format!("email:{}", r.recipient),
            r.community,
            r.as_of.to_string(),
            r.message_id,
            format!("{:?}", r.status).to_lowercase(),
            r.attempts.to_string(),
            r.error.unwrap_or_default(),
        ]);
    }
    for r in sinks::ledger(state)
        .read()?
        .into_iter()
        .filter(|r| keep(&r.community))
    {
        let page = if r.pages > 1 {
            format!(" ({}/{})", r.page, r.pages)
        } else {
            String::new()
        };
        rows.push([
            r.at,
            r.sink,
            r.community,
            r.as_of.to_string(),
            format!("{}{page}", r.id),
            format!("{:?}", r.status).to_lowercase(),
            r.attempts.to_string(),
            r.error.unwrap_or_default(),
        ]);
    }
    if rows.is_empty() {
        println!(
            "nothing emailed or delivered yet ({})",
            state.root().display()
        );
        return Ok(());
    }
    rows.sort();
    print_table(
        [
            "at",
            "sink",
            "community",
            "as_of",
            "id",
            "status",
            "attempts",
            "last error",
        ],
        &rows,
    );
    Ok(())
}
