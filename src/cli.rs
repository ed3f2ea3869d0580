//! The `pulse` command line: argument definitions and the glue from each command to the
//! library. `main.rs` only parses, sets up logging and maps the outcome to an exit status.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::ingest::files::InputFormat;
use crate::lake::events::WriterOptions;
use crate::lake::Lake;

/// Exit status of `pulse import` when some lines were quarantined (everything else was
/// imported). 0 means every line was imported or was a duplicate; 1 is an error.
pub const EXIT_QUARANTINED: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "pulse",
    version,
    about = "Community Pulse: engagement events into a Parquet lake, metrics, reports and ranked lists",
    after_help = "Config: config/pulse.toml by default (built-in defaults when it does not exist);\n\
                  see config/pulse.example.toml for every key."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file [default: config/pulse.toml]
    #[arg(long, global = true, env = "PULSE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Lake location, overriding the config's `lake`
    #[arg(long, global = true, env = "PULSE_LAKE")]
    pub lake: Option<String>,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Only print warnings and errors
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load canonical events (NDJSON or CSV) into the lake.
    ///
    /// Duplicates of events already in the lake (same source and event_id) are skipped; bad
    /// lines go to <lake>/quarantine/ with file, line and reason, and the rest is imported.
    /// Exit status: 0 all lines imported or duplicate, 3 some lines quarantined, 1 error.
    #[command(
        after_help = "Examples:\n  pulse import events.ndjson\n  pulse import --format csv export-2026-11.csv\n  pulse --lake /data/lake import day1.ndjson day2.ndjson"
    )]
    Import {
        /// Files to import
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Input format
        #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
        format: InputFormat,
    },
    /// Compute every metric table (SPEC §4, §5) for an as_of date.
    ///
    /// Runs every configured community, or every community in the lake when none is
    /// configured. Re-running an as_of replaces its partitions.
    #[command(
        after_help = "Examples:\n  pulse run                          # today, in each community's timezone\n  pulse run --as-of 2026-11-23\n  pulse run --as-of 2026-11-23 --community python-camp"
    )]
    Run {
        /// The as_of date D (YYYY-MM-DD): the run sees events before local midnight starting D
        /// [default: today in each community's timezone]
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// Only this community
        #[arg(long)]
        community: Option<String>,
    },
    /// Run read-only SQL over the lake (`events`, every metric table and the rollups).
    #[command(
        after_help = "Examples:\n  pulse query \"SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC\"\n  pulse query --format csv --output types.csv \"SELECT * FROM events LIMIT 10\"\n  pulse query --format parquet --output posts.parquet \"SELECT * FROM events WHERE event_type = 'post'\""
    )]
    Query {
        /// The SQL query
        sql: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
        /// Write to this file instead of standard output (required for parquet)
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Write a realistic synthetic community as canonical NDJSON.
    #[command(
        after_help = "Examples:\n  pulse generate --members 2000 --days 120 --communities 2 --out sample.ndjson\n  pulse generate --members 50000 --days 365 --seed 7 --end 2026-11-23 --out big.ndjson"
    )]
    Generate {
        /// Members per community
        #[arg(long, default_value_t = 1000)]
        members: u32,
        /// Days of history
        #[arg(long, default_value_t = 120)]
        days: u32,
        /// Number of communities
        #[arg(long, default_value_t = 1)]
        communities: u32,
        /// Random seed (the same seed and end date give the same file)
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// First day after the generated period, YYYY-MM-DD [default: today, UTC]
        #[arg(long)]
        end: Option<chrono::NaiveDate>,
        /// Output file (`-` for standard output)
        #[arg(long)]
        out: PathBuf,
    },
    /// Validate a config file; errors name the file, the key and the problem.
    CheckConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    Table,
    Csv,
    /// A JSON array of objects
    Json,
    Parquet,
}

/// Run one parsed command.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let config_path = cli.global.config.as_deref();
    match cli.command {
        Command::CheckConfig => {
            let (config, path) = Config::load(config_path)?;
            match path {
                Some(p) => println!(
                    "{}: OK ({} communities configured)",
                    p.display(),
                    config.communities.len()
                ),
                None => println!(
                    "no config file at {}: the built-in defaults are used",
                    crate::config::DEFAULT_CONFIG_PATH
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate {
            members,
            days,
            communities,
            seed,
            end,
            out,
        } => {
            let options = crate::generate::GenerateOptions {
                members,
                days,
                communities: communities.max(1),
                seed,
                end: end.unwrap_or_else(|| chrono::Utc::now().date_naive()),
            };
            let written = if out.as_os_str() == "-" {
                crate::generate::generate(&options, &mut std::io::stdout().lock())?
            } else {
                let file = std::fs::File::create(&out)
                    .io_context(|| format!("creating {}", out.display()))?;
                let mut w = std::io::BufWriter::new(file);
                let n = crate::generate::generate(&options, &mut w)?;
                w.flush()
                    .io_context(|| format!("writing {}", out.display()))?;
                n
            };
            eprintln!("wrote {written} events to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { files, format } => {
            let lake = open_lake(&cli.global)?;
            let started = std::time::Instant::now();
            let stats = crate::ingest::files::import_files(
                &lake,
                &files,
                format,
                WriterOptions::default(),
            )?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "read {} · imported {} · duplicate {} · quarantined {} · {} files · {:.1}s ({:.0} events/s)",
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
                    lake.quarantine_dir().display()
                );
                return Ok(ExitCode::from(EXIT_QUARANTINED));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { as_of, community } => {
            let (config, _) = Config::load(config_path)?;
            let lake = lake_from(&config, &cli.global)?;
            let runs = tokio_runtime()?.block_on(crate::models::run(
                &config,
                &lake,
                as_of,
                community.as_deref(),
            ))?;
            if runs.is_empty() {
                println!("no communities: the lake has no events and none are configured (import events first)");
            }
            for run in runs {
                let rows: Vec<String> =
                    run.tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
                println!(
                    "{} as_of {}: {} ({} of {} rollup partitions refreshed, {:.1}s)",
                    run.community,
                    run.window.as_of,
                    rows.join(" · "),
                    run.rollups.refreshed,
                    run.rollups.partitions,
                    run.seconds
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Query {
            sql,
            format,
            output,
        } => {
            let (config, _) = Config::load(config_path)?;
            let lake = lake_from(&config, &cli.global)?;
            let runtime = tokio_runtime()?;
            let (schema, batches) = runtime.block_on(async {
                let ctx = crate::engine::session(&config.engine, &lake).await?;
                crate::models::prepare_session(&ctx, &lake).await?;
                crate::engine::query(&ctx, &sql).await
            })?;
            write_result(schema, &batches, format, output.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open_lake(global: &GlobalArgs) -> Result<Lake> {
    let (config, _) = Config::load(global.config.as_deref())?;
    lake_from(&config, global)
}

fn lake_from(config: &Config, global: &GlobalArgs) -> Result<Lake> {
    Lake::open(global.lake.as_deref().unwrap_or(&config.lake))
}

pub fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .io_context(|| "starting the async runtime".into())
}

/// Print or save a query result.
fn write_result(
    schema: SchemaRef,
    batches: &[RecordBatch],
    format: QueryFormat,
    output: Option<&std::path::Path>,
) -> Result<()> {
    use datafusion::arrow::{csv, json, util::pretty};
    let mut sink: Box<dyn Write + Send> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).io_context(|| format!("creating {}", path.display()))?,
        )),
        None if format == QueryFormat::Parquet => {
            return Err(Error::Usage("--format parquet needs --output FILE".into()));
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    match format {
        QueryFormat::Table => {
            let table = pretty::pretty_format_batches(batches)?;
            writeln!(sink, "{table}").io_context(|| "writing the result".into())?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if output.is_none() && std::io::stdout().is_terminal() {
                eprintln!("{rows} row(s)");
            }
        }
        QueryFormat::Csv => {
            let mut w = csv::WriterBuilder::new().with_header(true).build(&mut sink);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(schema))?;
            }
            for b in batches {
                w.write(b)?;
            }
        }
        QueryFormat::Json => {
            let mut w = json::ArrayWriter::new(&mut sink);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            writeln!(sink).io_context(|| "writing the result".into())?;
        }
        QueryFormat::Parquet => {
            let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(&mut sink, schema, None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
    }
    sink.flush().io_context(|| "writing the result".into())
}
