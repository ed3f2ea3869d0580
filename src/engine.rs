//! The one place that builds DataFusion sessions.
//!
//! Every run gets a fresh [`SessionContext`] (a long-lived context caches directory listings
//! and would miss files written since), with a memory pool that spills to disk beyond
//! `engine.memory_limit`, `engine.target_partitions` threads, and every lake table registered
//! with an explicit schema, so an empty lake is a valid lake.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};

use crate::config::EngineConfig;
use crate::error::{IoContext, Result};
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

/// A fresh session over `lake` with `events` and every metric table registered.
pub async fn session(config: &EngineConfig, lake: &Lake) -> Result<SessionContext> {
    let ctx = SessionContext::new_with_config_rt(session_config(config), runtime_env(config)?);
    register_table(
        &ctx,
        "events",
        &lake.events_dir(),
        crate::event::file_schema(),
        &[
            ("community_id", DataType::Utf8),
            ("event_date", DataType::Date32),
        ],
    )
    .await?;
    for (table, schema) in crate::models::metric_tables() {
        register_table(
            &ctx,
            table,
            &lake.metrics_dir(table),
            schema,
            &[
                ("community_id", DataType::Utf8),
                ("as_of", DataType::Date32),
            ],
        )
        .await?;
    }
    Ok(ctx)
}

/// Register a Hive-partitioned Parquet directory as a table with a known file schema.
pub async fn register_table(
    ctx: &SessionContext,
    name: &str,
    dir: &std::path::Path,
    file_schema: SchemaRef,
    partition_cols: &[(&str, DataType)],
) -> Result<()> {
    std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            partition_cols
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
        );
    let url = format!("{}/", dir.display());
    ctx.register_listing_table(name, url, options, Some(file_schema), None)
        .await?;
    Ok(())
}

/// Options for SQL from users: queries only, no DDL, DML or `SET`.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Run read-only SQL and collect the result.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let df = ctx.sql_with_options(sql, read_only()).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    Ok((schema, df.collect().await?))
}
