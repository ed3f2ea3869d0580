//! `pulse`: parse the command line, set up logging, run, map the outcome to an exit status.

use std::process::ExitCode;

use clap::Parser;
use pulse::cli::{Cli, LogFormat};

/// mimalloc instead of glibc's allocator: query execution allocates and frees many small Arrow
/// buffers across threads, where glibc spent about a fifth of a daily run (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    pulse::engine::memory::keep_c_heap();
    let cli = Cli::parse();
    // Ballista's scheduler and executor narrate every job at info level: only their warnings
    // by default (PULSE_LOG=ballista=info brings them back). Its `display` module logs an
    // error for every stage whose metrics it cannot pretty-print (a debug aid; the query is
    // unaffected), so that one is off.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PULSE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if cli.global.quiet {
            "warn"
        } else {
            "info,ballista=warn,ballista_scheduler::display=off"
        })
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.global.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_target(false).init(),
    }
    match pulse::cli::run(cli) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(e) => {
            let code = e.exit_code();
            eprintln!("error: {:#}", anyhow::Error::from(e));
            ExitCode::from(code)
        }
    }
}
