//! `pulse ballista-scheduler` / `pulse ballista-executor`: Ballista's own processes with
//! pulse's SQL functions and the lake's object store. They listen on 127.0.0.1 unless told
//! otherwise: they have no authentication of their own (see the README before exposing them).

use super::{Ctx, Outcome};
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub bind: std::net::SocketAddr,
}

#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// The scheduler, as df://host:port.
    #[arg(long)]
    pub scheduler: String,
    /// Address for the executor's data (Arrow Flight) service.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub bind: std::net::SocketAddr,
    /// Port of the executor's gRPC service.
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
}

pub fn scheduler(args: SchedulerArgs, ctx: &Ctx) -> Result<Outcome> {
    ctx.block_on(crate::engine::ballista::run_scheduler(
        &ctx.config()?.engine,
        ctx.lake()?,
        args.bind,
    ))??;
    Ok(Outcome::Success)
}

pub fn executor(args: ExecutorArgs, ctx: &Ctx) -> Result<Outcome> {
    ctx.block_on(crate::engine::ballista::run_executor(
        &ctx.config()?.engine,
        ctx.lake()?,
        &args.scheduler,
        args.bind,
        args.grpc_port,
    ))??;
    Ok(Outcome::Success)
}
