//! `pulse serve`: the receiver, the spool compactor and the scheduler until SIGTERM or Ctrl-C.

use super::{Ctx, Outcome};
use crate::error::Result;
use crate::serve::{shutdown_signals, Application};

pub fn cmd(ctx: &Ctx) -> Result<Outcome> {
    let (config, lake) = (ctx.config()?.clone(), ctx.lake()?.clone());
    ctx.block_on(async move {
        let app = Application::build(config, lake).await?;
        app.run_until_stopped(shutdown_signals()?).await
    })??;
    Ok(Outcome::Success)
}
