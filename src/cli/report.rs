//! `pulse report`: render a report from the metric tables without sending it.

use std::path::PathBuf;

use super::context::{lake_communities, metrics_day};
use super::{Ctx, Outcome};
use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The as_of date [default: the latest one with metrics, per community]
    #[arg(long)]
    pub as_of: Option<chrono::NaiveDate>,
    /// Only this community
    #[arg(long)]
    pub community: Option<String>,
    /// Write here instead of the lake (one subdirectory per community)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Open report.html in the default browser (xdg-open / open)
    #[arg(long)]
    pub open: bool,
}

pub fn cmd(args: Args, ctx: &Ctx) -> Result<Outcome> {
    let (config, lake) = (ctx.config()?, ctx.lake()?);
    let templates = crate::report::templates(config)?;
    let mut written = 0;
    for id in lake_communities(lake, args.community.as_deref())? {
        let settings = config.community(&id);
        let Some(day) = metrics_day(lake, &id, args.as_of)? else {
            continue;
        };
        let report = ctx.block_on(crate::report::write_report(
            config,
            lake,
            &templates,
            &settings,
            day,
            args.out.as_ref().map(|o| o.join(&id).join(day.to_string())),
        ))??;
        let html = format!("{}/report.html", report.dir);
        println!("{id} as_of {day}: {html}");
        println!("  subject: {}", report.rendered.subject);
        if args.open {
            if html.contains("://") {
                eprintln!("--open needs a local file: add --out DIR to preview a report of an object-store lake");
            } else {
                open_in_browser(std::path::Path::new(&html));
            }
        }
        written += 1;
    }
    if written == 0 {
        return Err(Error::Usage(
            "no report written: no community has metrics (run `pulse run` first)".into(),
        ));
    }
    Ok(Outcome::Success)
}

fn open_in_browser(path: &std::path::Path) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener).arg(path).spawn() {
        eprintln!(
            "could not run {opener} ({e}); open {} yourself",
            path.display()
        );
    }
}
