//! The `pulse` command line: the clap types and one line per command. Each command is a file
//! with `fn cmd(args, &Ctx) -> Result<Outcome>`; [`context::Ctx`] loads the config, the lake and
//! the async runtime once, on first use; [`output`] prints tables and query results. What a
//! command prints comes from what the library returns: the library itself prints nothing.
//! Exit statuses live in [`crate::error::exit`].

mod backfill;
#[cfg(feature = "ballista")]
mod ballista;
mod check_config;
mod compact;
mod completions;
pub mod context;
mod deliveries;
mod demo;
mod forget;
mod generate;
mod import;
mod init;
mod members;
pub mod output;
mod query;
mod report;
mod run;
mod runs;
mod serve;
mod status;
mod taxonomy;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{exit, Result};
pub use context::Ctx;

/// How a command that ran to its end went, beyond "done".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// `pulse import`: some lines were quarantined.
    Quarantined,
    /// `pulse run`: something could not be delivered.
    DeliveryFailed,
    /// Some items failed and were reported (`pulse backfill`).
    Failed,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => exit::SUCCESS,
            Outcome::Quarantined => exit::QUARANTINED,
            Outcome::DeliveryFailed => exit::DELIVERY_FAILED,
            Outcome::Failed => exit::FAILURE,
        }
    }
}

/// `pulse --version`: the package version and the git commit it was built from (`unknown`
/// when built outside a git checkout, e.g. from a source archive; see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PULSE_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "pulse",
    version = VERSION,
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

#[derive(Debug, clap::Args)]
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
    /// Load canonical events (NDJSON or CSV), a Slack / Discord export, or a spreadsheet
    /// (xlsx or CSV, UTF-8 or GBK) through a mapping (`--format table --mapping M`), into the lake.
    ///
    /// Duplicates of events already in the lake (same source and event_id) are skipped; bad
    /// lines go to <lake>/quarantine/ with file, line and reason, and the rest is imported.
    /// Exit status: 0 all lines imported or duplicate, 3 some lines quarantined, 1 error.
    #[command(
        after_help = "Examples:\n  pulse import events.ndjson\n  pulse import --format csv export-2026-11.csv\n  pulse import --format slack_export --community python-camp slack-export.zip\n  pulse import --format discord_export --community python-camp general.json\n  pulse --lake /data/lake import day1.ndjson day2.ndjson"
    )]
    Import(import::Args),
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
    Run(run::Args),
    /// Run the webhook receiver (on `ingest.listen`) and the schedule: the full pipeline
    /// (spool → lake, models, report, email, ranked lists) for each community at
    /// `report.schedule`, evaluated in the community's timezone, until SIGTERM or Ctrl-C.
    ///
    /// Endpoints: POST /v1/events (canonical events, bearer token from `ingest.token_env`, or from `[[ingest.tokens]]` for some communities),
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
    BallistaScheduler(ballista::SchedulerArgs),
    /// Run a Ballista executor that knows pulse's SQL functions, serving a scheduler started
    /// with `pulse ballista-scheduler`. It reads the lake of the config.
    #[cfg(feature = "ballista")]
    #[command(
        name = "ballista-executor",
        after_help = "Examples:\n  pulse ballista-executor --scheduler df://scheduler-host:50050"
    )]
    BallistaExecutor(ballista::ExecutorArgs),
    /// Compute every as_of from --from to --to (models only, unless --send), resumably.
    ///
    /// Each finished (community, as_of) is recorded; running the same command again after an
    /// interruption skips what is done (--restart recomputes everything).
    #[command(
        after_help = "Examples:\n  pulse backfill --from 2026-01-01 --to 2026-06-30\n  pulse backfill --from 2026-11-02 --to 2026-11-23 --community python-camp --send"
    )]
    Backfill(backfill::Args),
    /// The run history (from <state_dir>/runs.jsonl), newest last.
    #[command(
        after_help = "Examples:\n  pulse runs\n  pulse runs --community python-camp --limit 50"
    )]
    Runs(runs::Args),
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
    Deliveries(deliveries::Args),
    /// Render a report from the metric tables without sending it (to preview template changes).
    ///
    /// Writes report.html, report.txt and the chart PNGs to <lake>/reports/<community>/<as_of>/
    /// (or --out) and prints where. The metrics must exist: `pulse run` computes them.
    #[command(
        after_help = "Examples:\n  pulse report                                  # the latest as_of of every community\n  pulse report --as-of 2026-11-23 --community python-camp --open\n  pulse report --out /tmp/preview"
    )]
    Report(report::Args),
    /// Merge the small files of each event partition (community, UTC day) into one file,
    /// sorted like an import writes it.
    ///
    /// Every import and spool move adds a file per partition it touches; `pulse serve` and
    /// `pulse run` merge partitions with more than `compaction.max_files` files on their own,
    /// this merges every partition with more than one. Atomic per partition: readers see the
    /// old files or the new one. Waits for a running import; exits 5 during a run.
    #[command(
        after_help = "Examples:\n  pulse compact\n  pulse compact --community python-camp --before 2026-11-01"
    )]
    Compact(compact::Args),
    /// Run read-only SQL over the lake (`events`, every metric table and the rollups).
    #[command(
        after_help = "Examples:\n  pulse query \"SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC\"\n  pulse query --format csv --output types.csv \"SELECT * FROM events LIMIT 10\"\n  pulse query --format parquet --output posts.parquet \"SELECT * FROM events WHERE event_type = 'post'\""
    )]
    Query(query::Args),
    /// Write a realistic synthetic community as canonical NDJSON.
    #[command(
        after_help = "Examples:\n  pulse generate --members 2000 --days 120 --communities 2 --out sample.ndjson\n  pulse generate --members 50000 --days 365 --seed 7 --end 2026-11-23 --out big.ndjson"
    )]
    Generate(generate::Args),
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
    Demo(demo::Args),
    /// The member directory: display names kept apart from the lake, in
    /// <state_dir>/members.sqlite (SPEC §8). Reports show them beside member ids.
    #[command(
        after_help = "Examples:\n  pulse members import names.csv          # member_id,display_name (UTF-8 or GBK)\n  pulse members set u000306 \"王小明\"\n  pulse members list --community python-camp"
    )]
    Members(members::Args),
    /// Help with the demand taxonomy: `suggest` prints keyword lines for the emerging topics
    #[command(
        after_help = "Examples:\n  pulse taxonomy suggest\n  pulse taxonomy suggest --community python-camp --as-of 2026-11-23 --top 20 > suggestions.toml"
    )]
    Taxonomy(taxonomy::Args),
    /// Erase members from everything pulse keeps (SPEC §8): their events (others' events
    /// naming them get a null target), every metric partition (computed again without them),
    /// rollups, stored reports (rendered again), ranked-list files, the member directory,
    /// quarantine lines, spooled webhook events and queued emails. A keyed hash of each id
    /// (key in the variable `[privacy] forget_key_env` names) keeps later imports and webhooks
    /// from bringing them back. Running it again changes nothing more.
    #[command(
        after_help = "Examples:\n  PULSE_FORGET_KEY=... pulse forget u000306 --dry-run\n  PULSE_FORGET_KEY=... pulse forget u000306 stripe:cus_42\n  PULSE_FORGET_KEY=... pulse forget u000306 --community python-camp"
    )]
    Forget(forget::Args),
    /// Write a commented starter config to DIR/config/pulse.toml (every key and its default).
    #[command(after_help = "Examples:\n  pulse init\n  pulse init /srv/pulse")]
    Init(init::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  pulse completions bash > /etc/bash_completion.d/pulse\n  pulse completions zsh > \"${fpath[1]}/_pulse\"\n  pulse completions fish > ~/.config/fish/completions/pulse.fish"
    )]
    Completions(completions::CompletionArgs),
    /// Print the manual page (roff), or write one page per command with --dir.
    #[command(
        after_help = "Examples:\n  pulse man | man -l -\n  pulse man > /usr/local/share/man/man1/pulse.1\n  pulse man --dir /usr/local/share/man/man1"
    )]
    Man(completions::ManArgs),
}

/// Run one parsed command.
pub fn run(cli: Cli) -> Result<Outcome> {
    let Cli { global, command } = cli;
    match command {
        // Documentation for everyone on the machine: written with the caller's umask.
        Command::Completions(args) => return completions::completions(args),
        Command::Man(args) => return completions::man(args),
        _ => {}
    }
    // Owner-only files until the config says otherwise (`umask`), also for a lake opened
    // before the config is read.
    crate::config::Umask::default().apply();
    let ctx = Ctx::new(global);
    match command {
        Command::Import(args) => import::cmd(args, &ctx),
        Command::Run(args) => run::cmd(args, &ctx),
        Command::Serve => serve::cmd(&ctx),
        #[cfg(feature = "ballista")]
        Command::BallistaScheduler(args) => ballista::scheduler(args, &ctx),
        #[cfg(feature = "ballista")]
        Command::BallistaExecutor(args) => ballista::executor(args, &ctx),
        Command::Backfill(args) => backfill::cmd(args, &ctx),
        Command::Runs(args) => runs::cmd(args, &ctx),
        Command::Status => status::cmd(&ctx),
        Command::Deliveries(args) => deliveries::cmd(args, &ctx),
        Command::Report(args) => report::cmd(args, &ctx),
        Command::Compact(args) => compact::cmd(args, &ctx),
        Command::Query(args) => query::cmd(args, &ctx),
        Command::Generate(args) => generate::cmd(args),
        Command::CheckConfig => check_config::cmd(&ctx),
        Command::Demo(args) => demo::cmd(args),
        Command::Members(args) => members::cmd(args, &ctx),
        Command::Taxonomy(args) => taxonomy::cmd(args, &ctx),
        Command::Forget(args) => forget::cmd(args, &ctx),
        Command::Init(args) => init::cmd(args),
        Command::Completions(_) | Command::Man(_) => unreachable!("answered above"),
    }
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
    /// Spreadsheets (.csv in UTF-8 or GBK, .xlsx) read through --mapping
    Table,
}
