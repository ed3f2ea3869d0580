//! `pulse completions SHELL` and `pulse man [--dir DIR]`: shell completion scripts
//! (clap_complete) and manual pages (clap_mangen), generated from the command line's own
//! definition so they never drift from `--help`.

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;

use super::{Cli, Outcome};
use crate::error::{IoContext, Result};

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to complete for
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write pulse.1 and a page per command (pulse-run.1, …) into DIR instead of printing
    /// pulse.1
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(args: CompletionArgs) -> Result<Outcome> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "pulse", &mut script);
    print_bytes(&script)?;
    Ok(Outcome::Success)
}

pub fn man(args: ManArgs) -> Result<Outcome> {
    let command = Cli::command();
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).io_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .io_context(|| format!("writing manual pages to {}", dir.display()))?;
            println!("wrote the manual pages to {}", dir.display());
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .io_context(|| "rendering the manual page".to_string())?;
            print_bytes(&page)?;
        }
    }
    Ok(Outcome::Success)
}

fn print_bytes(bytes: &[u8]) -> Result<()> {
    std::io::stdout()
        .lock()
        .write_all(bytes)
        .io_context(|| "writing to standard output".to_string())
}
