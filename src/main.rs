//! `pulse`: parse the command line, set up logging, run, map the outcome to an exit status.

use std::process::ExitCode;

use clap::Parser;
use pulse::cli::{Cli, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PULSE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if cli.global.quiet { "warn" } else { "info" })
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.global.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_target(false).init(),
    }
    match pulse::cli::run(cli).map_err(anyhow::Error::from) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
