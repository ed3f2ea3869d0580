//! `pulse demo`: the whole pipeline on a generated community, in one command, with no network.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::Outcome;
use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::lake::Lake;

/// Marks a directory `pulse demo` made, so a later demo may replace it.
const MARKER: &str = ".pulse-demo";

/// The demo's config: the two built-in communities of the generator, a report for each, a
/// file sink, email to the file outbox. Paths are relative to the demo directory.
const DEMO_CONFIG: &str = r#"# Written by `pulse demo`. Run pulse here with: PULSE_CONFIG=pulse.toml pulse <command>
lake = "lake"
state_dir = "state"

[defaults]
membership = { product_terms = { "monthly" = 30, "annual" = 365 } }   # the generator's plans

[[communities]]
id = "python-camp"
name = "Python 实战营"
timezone = "Asia/Shanghai"
locale = "zh-CN"
report_to = ["运营 <ops@python-camp.example>"]

[[communities]]
id = "data-circle"
name = "Data Circle"
timezone = "America/New_York"
locale = "en"
report_to = ["Community lead <lead@data-circle.example>"]

[report]
from = "Community Pulse <pulse@localhost>"

[email]
transport = "file"               # an .eml per recipient in state/outbox

[[sinks]]
kind = "file"
path = "out/ranked"
formats = ["csv", "json", "parquet"]
"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to put it (replaced if it holds an earlier demo)
    #[arg(long, default_value = "pulse-demo")]
    pub dir: PathBuf,
    /// Members per community
    #[arg(long, default_value_t = 2000)]
    pub members: u32,
    /// Days of history
    #[arg(long, default_value_t = 120)]
    pub days: u32,
    /// Random seed
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The as_of date of the run [default: today, UTC]
    #[arg(long)]
    pub as_of: Option<chrono::NaiveDate>,
}

pub fn cmd(args: Args) -> Result<Outcome> {
    demo(&DemoOptions {
        dir: args.dir,
        members: args.members,
        days: args.days,
        seed: args.seed,
        as_of: args
            .as_of
            .unwrap_or_else(|| chrono::Utc::now().date_naive()),
    })?;
    Ok(Outcome::Success)
}

/// What `pulse demo` does.
#[derive(Debug, Clone)]
struct DemoOptions {
    dir: PathBuf,
    members: u32,
    days: u32,
    seed: u64,
    /// The as_of of the run; the generated history ends the day before.
    as_of: NaiveDate,
}

/// Generate, import, run every stage, and print where everything is.
fn demo(options: &DemoOptions) -> Result<()> {
    let started = std::time::Instant::now();
    let dir = &options.dir;
    prepare_dir(dir)?;
    let config_path = dir.join("pulse.toml");
    std::fs::write(&config_path, DEMO_CONFIG)
        .io_context(|| format!("writing {}", config_path.display()))?;
    // Paths in the config are relative to the directory pulse runs in: the demo directory.
    let mut config = Config::from_toml(DEMO_CONFIG, &config_path)?;
    config.lake = crate::config::LakeLocation::try_from(dir.join("lake").display().to_string())
        .map_err(Error::Usage)?;
    config.state_dir = dir.join("state");
    for sink in &mut config.sinks {
        if let crate::config::SinkConfig::File { path, .. } = sink {
            *path = dir.join(&*path);
        }
    }

    let sample = dir.join("events.ndjson");
    let generate = crate::generate::GenerateOptions {
        members: options.members,
        days: options.days,
        communities: 2,
        seed: options.seed,
        end: options.as_of,
    };
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&sample).io_context(|| format!("creating {}", sample.display()))?,
    );
    let events = crate::generate::generate(&generate, &mut out)?;
    std::io::Write::flush(&mut out).io_context(|| format!("writing {}", sample.display()))?;
    drop(out);
    println!(
        "1/4 generated {events} events: 2 communities × {} members × {} days → {}",
        options.members,
        options.days,
        sample.display()
    );

    let lake = Lake::open(config.lake.as_str())?;
    let stats = crate::ingest::files::import_files(
        &lake,
        std::slice::from_ref(&sample),
        crate::ingest::files::InputFormat::Auto,
        crate::lake::events::WriterOptions::default(),
    )?;
    println!(
        "2/4 imported {} events into {} Parquet files ({} quarantined)",
        stats.imported, stats.files, stats.quarantined
    );

    let runtime = super::context::runtime()?;
    let runs = runtime.block_on(crate::pipeline::run_now(
        &config,
        &lake,
        Some(options.as_of),
        None,
        crate::pipeline::DeliverOptions::default(),
    ))?;
    let models: Vec<_> = runs.iter().filter_map(|r| r.models.as_ref()).collect();
    println!(
        "3/4 computed {} metric tables for as_of {} ({})",
        models.first().map_or(0, |r| r.tables.len()),
        options.as_of,
        models
            .iter()
            .map(|r| format!("{} in {:.1}s", r.community, r.seconds))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let deliveries: Vec<_> = runs.iter().filter_map(|r| r.delivery.as_ref()).collect();
    if let Some(failed) = runs.iter().find(|r| !r.ok()) {
        return Err(Error::RunFailed {
            community: failed.record.community.clone(),
            as_of: failed.record.as_of,
            message: format!(
                "the demo did not complete: {}",
                failed
                    .record
                    .error
                    .as_deref()
                    .unwrap_or("something was not delivered")
            ),
        });
    }
    println!(
        "4/4 wrote {} reports, emailed {} (to the file outbox), delivered {} ranked lists",
        deliveries.iter().map(|d| d.reports.len()).sum::<usize>(),
        deliveries.iter().map(|d| d.email.sent).sum::<usize>(),
        deliveries.iter().map(|d| d.sinks.len()).sum::<usize>()
    );

    let headline = runtime.block_on(headline(&config, &lake, options.as_of))?;
    let rel = |p: &Path| p.display().to_string();
    println!();
    println!(
        "Done in {:.1}s. Everything is in {}:",
        started.elapsed().as_secs_f64(),
        rel(dir)
    );
    println!("  lake (Parquet)    {}", rel(&dir.join("lake")));
    for r in deliveries.iter().flat_map(|d| &d.reports) {
        println!(
            "  report            {}",
            rel(&Path::new(&r.dir).join("report.html"))
        );
    }
    println!("  emails (.eml)     {}", rel(&dir.join("state/outbox")));
    println!("  ranked lists      {}", rel(&dir.join("out/ranked")));
    println!("  config            {}", rel(&config_path));
    println!();
    for line in headline {
        println!("  {line}");
    }
    println!();
    println!("Try next (cd {}):", rel(dir));
    println!("  export PULSE_CONFIG=pulse.toml");
    if let Ok(exe) = std::env::current_exe() {
        println!(
            "  alias pulse={}   # unless pulse is on your PATH",
            exe.display()
        );
    }
    println!("  pulse query \"SELECT community_id, tier, count(*) AS members FROM member_activity GROUP BY 1, 2 ORDER BY 1, 3 DESC\"");
    println!("  pulse query \"SELECT rank, member_id, round(activity_score, 2) AS score, points FROM ranked_members WHERE community_id = 'data-circle' ORDER BY rank LIMIT 10\"");
    println!("  pulse query \"SELECT taxonomy, category, posts, round(unanswered_rate, 2) AS unanswered, priority_rank FROM demand_categories WHERE community_id = 'python-camp' ORDER BY 1, 5\"");
    Ok(())
}

/// A few numbers for the summary, read from the metric tables.
async fn headline(config: &Config, lake: &Lake, as_of: NaiveDate) -> Result<Vec<String>> {
    let ctx = crate::engine::session(&config.engine, lake).await?;
    let df = ctx
        .sql(
            "SELECT community_id, \
                    max(CASE WHEN metric = 'members' THEN value END) AS members, \
                    max(CASE WHEN metric = 'active_members' THEN value END) AS active, \
                    max(CASE WHEN metric = 'posts' THEN value END) AS posts \
             FROM kpis WHERE as_of = $1 GROUP BY community_id ORDER BY community_id",
        )
        .await?
        .with_param_values(vec![crate::engine::functions::date_scalar(as_of)])?;
    let batches = df.collect().await?;
    let mut lines = Vec::new();
    for b in &batches {
        let ids = datafusion::arrow::array::cast::as_string_array(b.column(0));
        let value = |col: usize, row: usize| {
            datafusion::arrow::array::cast::as_primitive_array::<
                datafusion::arrow::datatypes::Float64Type,
            >(b.column(col))
            .value(row)
        };
        for row in 0..b.num_rows() {
            lines.push(format!(
                "{}: {} members, {} active in the last 30 days, {} posts",
                ids.value(row),
                value(1, row),
                value(2, row),
                value(3, row)
            ));
        }
    }
    Ok(lines)
}

/// Make `dir` empty for the demo: create it, or replace an earlier demo's; refuse anything else.
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let earlier_demo = dir.join(MARKER).exists();
        let empty = std::fs::read_dir(dir)
            .io_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !earlier_demo && !empty {
            return Err(Error::Usage(format!(
                "{} exists and is not an earlier demo: choose another with --dir",
                dir.display()
            )));
        }
        if earlier_demo {
            std::fs::remove_dir_all(dir).io_context(|| format!("removing {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `pulse demo`; a later demo replaces this directory\n",
    )
    .io_context(|| format!("writing in {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_is_valid() {
        let config = Config::from_toml(DEMO_CONFIG, Path::new("pulse.toml")).unwrap();
        assert_eq!(config.communities().len(), 2);
    }

    #[test]
    fn demo_replaces_only_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious.txt"), "keep").unwrap();
        assert!(prepare_dir(dir.path()).is_err());
        let demo = dir.path().join("demo");
        prepare_dir(&demo).unwrap();
        std::fs::write(demo.join("old"), "").unwrap();
        prepare_dir(&demo).unwrap();
        assert!(!demo.join("old").exists());
    }
}
