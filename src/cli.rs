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

/// Exit status of `pulse run` when the metrics were computed but something could not be
/// delivered (an email still queued after its retries, or rejected). The next run retries
/// what is still queued.
pub const EXIT_DELIVERY_FAILED: u8 = 4;

/// Exit status of `pulse run` and `pulse backfill` when another run holds the run lock.
pub const EXIT_RUN_IN_PROGRESS: u8 = 5;

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
    /// Load canonical events (NDJSON or CSV), or a Slack / Discord export, into the lake.
    ///
    /// Duplicates of events already in the lake (same source and event_id) are skipped; bad
    /// lines go to <lake>/quarantine/ with file, line and reason, and the rest is imported.
    /// Exit status: 0 all lines imported or duplicate, 3 some lines quarantined, 1 error.
    #[command(
        after_help = "Examples:\n  pulse import events.ndjson\n  pulse import --format csv export-2026-11.csv\n  pulse import --format slack_export --community python-camp slack-export.zip\n  pulse import --format discord_export --community python-camp general.json\n  pulse --lake /data/lake import day1.ndjson day2.ndjson"
    )]
    Import {
        /// Files to import
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Input format
        #[arg(long, value_enum, default_value_t = ImportFormat::Auto)]
        format: ImportFormat,
        /// The community of a Slack or Discord export (canonical events name their own)
        #[arg(long)]
        community: Option<String>,
    },
    /// Compute every metric table (SPEC §4, §5) for an as_of date, then deliver: write the
    /// report to <lake>/reports/ and email it to each community's `report_to`.
    ///
    /// Runs every configured community, or every community in the lake when none is
    /// configured. Re-running an as_of replaces its partitions and its report, but does not
    /// email anyone twice (see --resend). Emails that could not be sent stay queued in
    /// <state_dir>/mail/queue and are retried by the next run.
    /// Exit status: 0 done, 4 something could not be delivered, 1 error.
    #[command(
        after_help = "Examples:\n  pulse run                          # today, in each community's timezone\n  pulse run --as-of 2026-11-23\n  pulse run --as-of 2026-11-23 --community python-camp --resend"
    )]
    Run {
        /// The as_of date D (YYYY-MM-DD): the run sees events before local midnight starting D
        /// [default: today in each community's timezone]
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// Only this community
        #[arg(long)]
        community: Option<String>,
        /// Email the report again to recipients who already received it for this as_of
        #[arg(long)]
        resend: bool,
        /// Deliver the ranked lists again to sinks that already received them
        #[arg(long)]
        redeliver: bool,
        /// Compute and write the metrics and the report, then say what would be emailed and
        /// delivered without sending anything
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the webhook receiver (on `ingest.listen`) and the schedule: the full pipeline
    /// (spool → lake, models, report, email, ranked lists) for each community at
    /// `report.schedule`, evaluated in the community's timezone, until SIGTERM or Ctrl-C.
    ///
    /// Endpoints: POST /v1/events (canonical events, bearer token from `ingest.token_env`),
    /// POST /v1/webhooks/<source> (`[[ingest.sources]]`: discourse, stripe,
    /// standard_webhooks, generic), GET /healthz, GET /metrics (Prometheus). A 2xx means the
    /// events are fsynced in <state_dir>/spool; the spool moves into the lake on
    /// `ingest.schedule` and before every run.
    ///
    /// Missed dates after downtime are run once each, oldest first (at most `report.catch_up`,
    /// marked late). Runs never overlap, also with `pulse run` in another process. On SIGTERM
    /// the current run finishes first (a second signal abandons it; nothing partial is
    /// published), then pulse exits 0.
    #[command(
        after_help = "Examples:\n  pulse serve\n  pulse --log-format json serve      # for log shippers\n  PULSE_LOG=debug pulse serve"
    )]
    Serve,
    /// Run a Ballista scheduler that knows pulse's SQL functions (for `[engine] backend =
    /// "ballista"`). It reads the lake of the config, so give it the same config and
    /// credentials as pulse.
    #[cfg(feature = "ballista")]
    #[command(
        name = "ballista-scheduler",
        after_help = "Examples:\n  pulse ballista-scheduler --bind 0.0.0.0:50050"
    )]
    BallistaScheduler {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:50050")]
        bind: std::net::SocketAddr,
    },
    /// Run a Ballista executor that knows pulse's SQL functions, serving a scheduler started
    /// with `pulse ballista-scheduler`. It reads the lake of the config.
    #[cfg(feature = "ballista")]
    #[command(
        name = "ballista-executor",
        after_help = "Examples:\n  pulse ballista-executor --scheduler df://scheduler-host:50050"
    )]
    BallistaExecutor {
        /// The scheduler, as df://host:port.
        #[arg(long)]
        scheduler: String,
        /// Address for the executor's data (Arrow Flight) service.
        #[arg(long, default_value = "0.0.0.0:50051")]
        bind: std::net::SocketAddr,
        /// Port of the executor's gRPC service.
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
    },
    /// Compute every as_of from --from to --to (models only, unless --send), resumably.
    ///
    /// Each finished (community, as_of) is recorded; running the same command again after an
    /// interruption skips what is done (--restart recomputes everything).
    #[command(
        after_help = "Examples:\n  pulse backfill --from 2026-01-01 --to 2026-06-30\n  pulse backfill --from 2026-11-02 --to 2026-11-23 --community python-camp --send"
    )]
    Backfill {
        /// First as_of (YYYY-MM-DD)
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last as_of, inclusive
        #[arg(long)]
        to: chrono::NaiveDate,
        /// Only this community
        #[arg(long)]
        community: Option<String>,
        /// Also write the reports, email them and deliver the ranked lists
        #[arg(long)]
        send: bool,
        /// Recompute as_of dates this backfill already finished
        #[arg(long)]
        restart: bool,
    },
    /// The run history (from <state_dir>/runs.jsonl), newest last.
    #[command(
        after_help = "Examples:\n  pulse runs\n  pulse runs --community python-camp --limit 50"
    )]
    Runs {
        /// Only this community
        #[arg(long)]
        community: Option<String>,
        /// Show at most this many (the newest)
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The next scheduled runs of each community and the outcome of its last run.
    #[command(
        after_help = "Examples:\n  pulse status\n  PULSE_CONFIG=/srv/pulse/config/pulse.toml pulse status"
    )]
    Status,
    /// List what was emailed and delivered (from <state_dir>), newest last.
    ///
    /// Every email (queued, sent, failed, rejected) and every ranked-list delivery (sink,
    /// community, as_of, id, status, attempts, last error).
    #[command(
        after_help = "Examples:\n  pulse deliveries\n  pulse deliveries --community python-camp\n  pulse deliveries --enable https://incentives.example.com/hooks/pulse   # after a 410"
    )]
    Deliveries {
        /// Only this community
        #[arg(long)]
        community: Option<String>,
        /// Re-enable a webhook sink that was disabled by a 410 Gone answer
        #[arg(long, value_name = "URL")]
        enable: Option<String>,
    },
    /// Render a report from the metric tables without sending it (to preview template changes).
    ///
    /// Writes report.html, report.txt and the chart PNGs to <lake>/reports/<community>/<as_of>/
    /// (or --out) and prints where. The metrics must exist: `pulse run` computes them.
    #[command(
        after_help = "Examples:\n  pulse report                                  # the latest as_of of every community\n  pulse report --as-of 2026-11-23 --community python-camp --open\n  pulse report --out /tmp/preview"
    )]
    Report {
        /// The as_of date [default: the latest one with metrics, per community]
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// Only this community
        #[arg(long)]
        community: Option<String>,
        /// Write here instead of the lake (one subdirectory per community)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Open report.html in the default browser (xdg-open / open)
        #[arg(long)]
        open: bool,
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
    /// Validate a config file (and the report templates it names); errors name the file, the
    /// key and the problem.
    #[command(
        after_help = "Examples:\n  pulse check-config\n  pulse --config /srv/pulse/config/pulse.toml check-config"
    )]
    CheckConfig,
    /// The whole pipeline on a generated community, in one command, with no network.
    ///
    /// Generates two communities (python-camp: zh-CN, Asia/Shanghai; data-circle: en,
    /// America/New_York), imports them, computes every metric table for the latest day, writes
    /// the reports, emails them to the file outbox and writes the ranked lists, then says where
    /// everything is. Uses its own config (DIR/pulse.toml), not yours.
    #[command(
        after_help = "Examples:\n  pulse demo\n  pulse demo --dir /tmp/pulse-demo --members 5000 --days 180"
    )]
    Demo {
        /// Where to put it (replaced if it holds an earlier demo)
        #[arg(long, default_value = "pulse-demo")]
        dir: PathBuf,
        /// Members per community
        #[arg(long, default_value_t = 2000)]
        members: u32,
        /// Days of history
        #[arg(long, default_value_t = 120)]
        days: u32,
        /// Random seed
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The as_of date of the run [default: today, UTC]
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
    },
    /// Write a commented starter config to DIR/config/pulse.toml (every key and its default).
    #[command(after_help = "Examples:\n  pulse init\n  pulse init /srv/pulse")]
    Init {
        /// The directory pulse will run in
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// `.csv` files are CSV, everything else NDJSON
    Auto,
    Ndjson,
    Csv,
    /// A Slack workspace export zip
    #[value(name = "slack_export")]
    SlackExport,
    /// A DiscordChatExporter JSON file
    #[value(name = "discord_export")]
    DiscordExport,
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
            crate::deliver::templates(&config)?;
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
        Command::Demo {
            dir,
            members,
            days,
            seed,
            as_of,
        } => {
            crate::demo::demo(&crate::demo::DemoOptions {
                dir,
                members,
                days,
                seed,
                as_of: as_of.unwrap_or_else(|| chrono::Utc::now().date_naive()),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { dir } => {
            let path = crate::demo::init(&dir)?;
            println!("wrote {}", path.display());
            println!("next:");
            println!("  1. edit it: your communities ([[communities]] id, timezone, locale, report_to), [email], [[sinks]]");
            println!("  2. pulse check-config");
            println!(
                "  3. pulse import your-export.ndjson   (or set up [ingest] and `pulse serve`)"
            );
            println!(
                "  4. pulse run                         (metrics, report, email, ranked lists)"
            );
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
        Command::Import {
            files,
            format,
            community,
        } => {
            let (config, _) = Config::load(config_path)?;
            let lake = lake_from(&config, &cli.global)?;
            let started = std::time::Instant::now();
            let export = match format {
                ImportFormat::SlackExport => Some(crate::config::ExportFormat::SlackExport),
                ImportFormat::DiscordExport => Some(crate::config::ExportFormat::DiscordExport),
                _ => None,
            };
            let stats = match export {
                Some(export) => {
                    let community = community.ok_or_else(|| {
                        Error::Usage("a Slack or Discord export needs --community <id>".into())
                    })?;
                    crate::event::check_community_id(&community)
                        .map_err(|e| Error::Usage(format!("--community: {e}")))?;
                    let ids = crate::ingest::adapters::read_identities(&config.ingest)?;
                    // Not in the lake's staging area: the importer clears that.
                    let scratch = config.state_dir.join("tmp");
                    let mut total = crate::lake::events::ImportStats::default();
                    for file in &files {
                        let s = crate::ingest::exports::import_export(
                            &lake, file, export, &community, &ids, &scratch,
                        )?;
                        total.read += s.read;
                        total.imported += s.imported;
                        total.duplicate += s.duplicate;
                        total.quarantined += s.quarantined;
                        total.files += s.files;
                    }
                    total
                }
                None => crate::ingest::files::import_files(
                    &lake,
                    &files,
                    match format {
                        ImportFormat::Csv => InputFormat::Csv,
                        ImportFormat::Ndjson => InputFormat::Ndjson,
                        _ => InputFormat::Auto,
                    },
                    WriterOptions::default(),
                )?,
            };
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
                    lake.display(crate::lake::QUARANTINE)
                );
                return Ok(ExitCode::from(EXIT_QUARANTINED));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            as_of,
            community,
            resend,
            redeliver,
            dry_run,
        } => {
            let (config, _) = Config::load(config_path)?;
            let lake = lake_from(&config, &cli.global)?;
            let runtime = tokio_runtime()?;
            let runs = runtime.block_on(crate::schedule::run_now(
                &config,
                &lake,
                as_of,
                community.as_deref(),
                crate::deliver::DeliverOptions {
                    resend,
                    redeliver,
                    dry_run,
                    late: false,
                },
            ))?;
            let runs = match runs {
                Ok(runs) => runs,
                Err(holder) => {
                    eprintln!("another pulse run is in progress ({holder}); not starting a second one. Try again when it has finished (`pulse runs` shows it).");
                    return Ok(ExitCode::from(EXIT_RUN_IN_PROGRESS));
                }
            };
            if runs.is_empty() {
                println!("no communities: the lake has no events and none are configured (import events first)");
                return Ok(ExitCode::SUCCESS);
            }
            let mut ok = true;
            for run in &runs {
                ok &= run.ok();
                if let Some(m) = &run.models {
                    let rows: Vec<String> =
                        m.tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
                    println!(
                        "{} as_of {}: {} ({} of {} rollup partitions refreshed, {:.1}s)",
                        m.community,
                        m.window.as_of,
                        rows.join(" · "),
                        m.rollups.refreshed,
                        m.rollups.partitions,
                        m.seconds
                    );
                }
                if let Some(summary) = &run.delivery {
                    print_delivery(summary, &config);
                }
                if run.record.status == crate::schedule::RunStatus::Failed {
                    eprintln!(
                        "{} as_of {}: run failed: {}",
                        run.record.community,
                        run.record.as_of,
                        run.record.error.as_deref().unwrap_or("")
                    );
                }
            }
            // A run that failed outright is an error (status 1), as before the history existed.
            if let Some(failed) = runs
                .iter()
                .find(|r| r.record.status == crate::schedule::RunStatus::Failed)
            {
                return Err(Error::Usage(format!(
                    "{} as_of {}: {}",
                    failed.record.community,
                    failed.record.as_of,
                    failed.record.error.as_deref().unwrap_or("failed")
                )));
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DELIVERY_FAILED)
            })
        }
        Command::Serve => {
            let (config, _) = Config::load(config_path)?;
            let lake = lake_from(&config, &cli.global)?;
            let runtime = tokio_runtime()?;
            runtime.block_on(crate::schedule::serve::serve(&config, &lake))?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "ballista")]
        Command::BallistaScheduler { bind } => {
            let (config, _) = Config::load(config_path)?;
            let lake = lake_from(&config, &cli.global)?;
            tokio_runtime()?.block_on(crate::engine::ballista::run_scheduler(
                &config.engine,
                &lake,
                bind,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "ballista")]
        Command::BallistaExecutor {
            scheduler,
            bind,
            grpc_port,
        } => {
            let (config, _) = Config::load(config_path)?;
            let lake = lake_from(&config, &cli.global)?;
            tokio_runtime()?.block_on(crate::engine::ballista::run_executor(
                &config.engine,
                &lake,
                &scheduler,
                bind,
                grpc_port,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backfill {
            from,
            to,
            community,
            send,
            restart,
        } => {
            let (config, _) = Config::load(config_path)?;
            let lake = lake_from(&config, &cli.global)?;
            if to < from {
                return Err(Error::Usage(format!("--to {to} is before --from {from}")));
            }
            let runtime = tokio_runtime()?;
            let outcome = runtime.block_on(crate::schedule::backfill(
                &config,
                &lake,
                &crate::schedule::BackfillOptions {
                    from,
                    to,
                    community,
                    send,
                    restart,
                    progress: !cli.global.quiet && std::io::stderr().is_terminal(),
                },
            ))?;
            match outcome {
                Err(holder) => {
                    eprintln!(
                        "another pulse run is in progress ({holder}); not starting the backfill"
                    );
                    Ok(ExitCode::from(EXIT_RUN_IN_PROGRESS))
                }
                Ok(b) => {
                    println!(
                        "backfill {from} … {to}: {} computed, {} already done, {} failed ({:.1}s)",
                        b.computed,
                        b.skipped,
                        b.failed.len(),
                        b.seconds
                    );
                    for f in &b.failed {
                        eprintln!("failed: {f}");
                    }
                    Ok(if b.failed.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
            }
        }
        Command::Runs { community, limit } => {
            let (config, _) = Config::load(config_path)?;
            let state = crate::state::StateDir::new(&config.state_dir);
            print_runs(&state, community.as_deref(), limit)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let (config, _) = Config::load(config_path)?;
            let lake = lake_from(&config, &cli.global)?;
            print_status(&config, &lake, chrono::Utc::now())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Deliveries { community, enable } => {
            let (config, _) = Config::load(config_path)?;
            let state = crate::state::StateDir::new(&config.state_dir);
            if let Some(url) = enable {
                let _lock = state.lock()?;
                if crate::deliver::sinks::enable(&state, &url)? {
                    println!("webhook sink {url} enabled: the next run delivers to it again");
                } else {
                    println!("webhook sink {url} is not disabled");
                }
                return Ok(ExitCode::SUCCESS);
            }
            print_deliveries(&state, community.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            as_of,
            community,
            out,
            open,
        } => {
            let (config, _) = Config::load(config_path)?;
            let lake = lake_from(&config, &cli.global)?;
            let templates = crate::deliver::templates(&config)?;
            let mut communities = lake.communities()?;
            if let Some(only) = &community {
                communities.retain(|c| c == only);
                if communities.is_empty() {
                    return Err(Error::Usage(format!(
                        "community `{only}` has no events in the lake"
                    )));
                }
            }
            let runtime = tokio_runtime()?;
            let mut written = 0;
            for id in communities {
                let settings = config.community(&id);
                let day = match as_of {
                    Some(d) => d,
                    None => match crate::deliver::report::metric_dates(&lake, &id)?.last() {
                        Some(d) => *d,
                        None => {
                            eprintln!("{id}: no metrics yet (run `pulse run` first); skipped");
                            continue;
                        }
                    },
                };
                let report = runtime.block_on(crate::deliver::write_report(
                    &config,
                    &lake,
                    &templates,
                    &settings,
                    day,
                    out.as_ref().map(|o| o.join(&id).join(day.to_string())),
                ))?;
                let html = format!("{}/report.html", report.dir);
                println!("{id} as_of {day}: {html}");
                println!("  subject: {}", report.rendered.subject);
                if open {
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
                crate::engine::query(&ctx, &sql).await
            })?;
            write_result(schema, &batches, format, output.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Print rows as aligned columns under `header` (cells cut at 90 characters).
fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count()).min(90);
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| {
                let cut: String = c.chars().take(w).collect();
                let pad = w - cut.chars().count();
                format!("{cut}{}", " ".repeat(pad))
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(header.to_vec()));
    for row in rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// The run history as a table.
fn print_runs(state: &crate::state::StateDir, community: Option<&str>, limit: usize) -> Result<()> {
    use crate::schedule::{latest_runs, RunKind};
    let runs: Vec<_> = latest_runs(crate::schedule::history(state).read()?)
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

/// Next scheduled runs per community, and each one's last run.
fn print_status(config: &Config, lake: &Lake, now: chrono::DateTime<chrono::Utc>) -> Result<()> {
    use crate::schedule::{latest_runs, next_fire, parse_cron, RunKind};
    let cron = parse_cron(&config.report.schedule)?;
    let state = crate::state::StateDir::new(&config.state_dir);
    let runs = latest_runs(crate::schedule::history(&state).read()?);
    let communities = crate::models::select_communities(config, lake, None)?;
    println!(
        "schedule `{}` (report.schedule), in each community's timezone",
        config.report.schedule
    );
    let mut rows: Vec<[String; 5]> = Vec::new();
    for c in &communities {
        let mut next = Vec::new();
        let mut after = now;
        for _ in 0..3 {
            match next_fire(&cron, c.timezone, after) {
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

/// The delivery history as a table: emails, then ranked-list deliveries.
fn print_deliveries(state: &crate::state::StateDir, community: Option<&str>) -> Result<()> {
    use crate::deliver::{email::EmailRecord, sinks};
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

/// Tell the user where each report went and what email did.
fn print_delivery(summary: &crate::deliver::DeliverySummary, config: &Config) {
    for r in &summary.reports {
        let mut line = format!(
            "{} as_of {}: report {}/report.html",
            r.community, r.as_of, r.dir
        );
        if r.queued > 0 {
            line.push_str(&format!(" · emailed to {} recipient(s)", r.queued));
        }
        if r.already_sent > 0 {
            line.push_str(&format!(
                " · {} recipient(s) already had it (--resend to send again)",
                r.already_sent
            ));
        }
        println!("{line}");
    }
    let email = &summary.email;
    if email.sent > 0 && config.email.transport == crate::config::EmailTransport::File {
        println!(
            "{} email(s) written to {}",
            email.sent,
            config.state_dir.join("outbox").display()
        );
    }
    for s in &summary.sinks {
        let line = format!(
            "{} as_of {} → {}: {}",
            s.community, s.as_of, s.sink, s.detail
        );
        if s.ok {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    }
    for f in &email.failed {
        eprintln!("email not sent, still queued for the next run: {f}");
    }
    for r in &email.rejected {
        eprintln!(
            "email rejected by the server (moved to {}): {r}",
            config.state_dir.join("mail/rejected").display()
        );
    }
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
