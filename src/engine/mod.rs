//! The one place that builds DataFusion sessions.
//!
//! Every run gets a fresh [`SessionContext`] (a long-lived context caches directory listings
//! and would miss files written since), with a memory pool that spills to disk beyond
//! `engine.memory_limit`, `engine.target_partitions` threads, the SQL functions the models
//! use ([`functions`]), and every lake table of the [`catalog`] registered with an explicit
//! schema, so an empty lake is a valid lake.
//!
//! `engine.backend` picks who executes the plans: this process (`local`), or Apache DataFusion
//! Ballista (`ballista-standalone`, `ballista`; only with `--features ballista`, see
//! [`ballista`]). The SQL is the same; only tables that exist solely in this process's memory
//! (config lists, model outputs) are handed over differently: see [`register_batches`].

#[cfg(feature = "ballista")]
pub mod ballista;
pub mod by_keys;
pub mod catalog;
pub mod functions;
pub mod memory;
pub mod terms;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};

use crate::config::{Backend, EngineConfig};
use crate::error::Result;
use crate::lake::Lake;

/// Runtime (memory pool, spill directory) for one session. A plain function of the config so a
/// distributed executor can build the same runtime.
pub fn runtime_env(config: &EngineConfig) -> Result<Arc<RuntimeEnv>> {
    Ok(RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(config.memory_limit.0 as usize)))
        .with_disk_manager_builder(DiskManagerBuilder::default())
        .with_object_list_cache_limit(0)
        .build_arc()?)
}

pub fn session_config(config: &EngineConfig) -> SessionConfig {
    SessionConfig::new()
        .with_target_partitions(config.target_partitions)
        .with_information_schema(true)
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true)
}

/// A fresh session over `lake` with every table of the lake [`catalog`] registered: `events`,
/// the metric tables and the rollups.
pub async fn session(config: &EngineConfig, lake: &Lake) -> Result<SessionContext> {
    let ctx = match config.backend {
        Backend::Local => {
            let ctx =
                SessionContext::new_with_config_rt(session_config(config), runtime_env(config)?);
            lake.register_store(&ctx)?;
            for udf in functions::all() {
                ctx.register_udf(udf);
            }
            for udaf in functions::aggregates() {
                ctx.register_udaf(udaf);
            }
            ctx
        }
        #[cfg(feature = "ballista")]
        Backend::Ballista | Backend::BallistaStandalone => {
            self::ballista::context(config, lake).await?
        }
        #[cfg(not(feature = "ballista"))]
        Backend::Ballista | Backend::BallistaStandalone => return Err(crate::error::Error::Usage(
            "Ballista backends are not built into this binary (build with `--features ballista`)"
                .into(),
        )),
    };
    catalog::register_all(&ctx, lake).await?;
    Ok(ctx)
}

/// Make `batches` queryable as table `name`, replacing any table of that name. The local
/// engine keeps them in memory. Ballista's executors cannot see this process's memory, so a
/// Ballista session writes them as Parquet into its scratch space in the lake and registers
/// that (the executors read it like any lake table).
pub async fn register_batches(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    ctx.deregister_table(name)?;
    #[cfg(feature = "ballista")]
    if let Some(scratch) = ctx
        .state()
        .config()
        .get_extension::<self::ballista::Scratch>()
    {
        return scratch.register(ctx, name, schema, &batches).await;
    }
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    Ok(())
}

/// Options for SQL from users: queries only, no DDL, DML or `SET`.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Run read-only SQL and collect the result. A file that disappears between planning (which
/// lists the files) and reading was replaced by a partition swap (compaction, erasure; see
/// `lake::compact`): the query is planned and run again, over the new files.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    // A compaction replaces partitions one after another for as long as it runs, so a slow
    // query can meet several swaps in a row.
    const ATTEMPTS: usize = 20;
    let mut attempt = 1;
    loop {
        let df = ctx.sql_with_options(sql, read_only()).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        match df.collect().await {
            Ok(batches) => return Ok((schema, batches)),
            Err(e) if attempt < ATTEMPTS && file_vanished(&e) => {
                tracing::debug!("a lake file was replaced while reading it; running again: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt as u64)).await;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `error` is, somewhere in its chain, a file or object that was not found.
fn file_vanished(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(object_store::Error::NotFound { .. }) = e.downcast_ref::<object_store::Error>()
        {
            return true;
        }
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
        {
            return true;
        }
        current = e.source();
    }
    false
}
