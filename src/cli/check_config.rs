//! `pulse check-config`: load and validate the config, and compile the report templates it
//! names.

use super::{Ctx, Outcome};
use crate::error::Result;

pub fn cmd(ctx: &Ctx) -> Result<Outcome> {
    let config = ctx.config()?;
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
