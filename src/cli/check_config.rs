//! `pulse check-config`: load and validate the config, check that the files and folders it
//! names exist, and compile the report templates it names.

use super::{Ctx, Outcome};
use crate::error::Result;

pub fn cmd(ctx: &Ctx) -> Result<Outcome> {
    let config = ctx.config()?;
    if let Some(file) = ctx.config_path()? {
        config.check_paths(file)?;
    }
    crate::report::templates(config)?;
    match ctx.config_path()? {
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
    Ok(Outcome::Success)
}
