//! Running the models on Apache DataFusion Ballista (`--features ballista`).
//!
//! - `backend = "ballista"` sends plans to the scheduler at `ballista_url` (`df://host:port`).
//!   The scheduler and its executors must be able to read the lake (an object-store lake, or a
//!   filesystem mounted at the same path everywhere) and must know pulse's SQL functions
//!   (`local_date`, `period_start`, `periods_between`, `days_between`): stock Ballista
//!   processes do not, so `pulse ballista-scheduler` and `pulse ballista-executor` run
//!   Ballista's own scheduler and executor with them ([`run_scheduler`], [`run_executor`]).
//! - `backend = "ballista-standalone"` starts a scheduler and an executor inside this process
//!   (once per Tokio runtime, then shared by every session) with pulse's functions, runtime
//!   (memory limit, spill directory) and the lake's object store.
//!
//! Tables that live only in this process's memory cannot be shipped to executors (DESIGN:
//! "models must be views or Parquet"), so a Ballista session carries a [`Scratch`]: such
//! tables are written as Parquet under `<lake>/_scratch/<session>/` (hidden from readers by
//! the leading `_`) and removed when the session ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::config::{Backend, EngineConfig};
use crate::error::{Error, Result};
use crate::lake::Lake;

/// A Ballista session over `lake`.
pub async fn context(config: &EngineConfig, lake: &Lake) -> Result<SessionContext> {
    let runtime = super::runtime_env(config)?;
    if let Some((url, store)) = lake.engine_store()? {
        runtime.register_object_store(&url, store);
    }
    let base = SessionConfig::new_with_ballista()
        .with_target_partitions(config.target_partitions)
        .with_information_schema(true)
        .with_ballista_standalone_parallelism(config.target_partitions)
        // Ballista 55's adaptive planner re-plans one of the models (member_state) forever,
        // adding a stage every ~100 ms; the static distributed planner runs it.
        .with_ballista_adaptive_query_planner(false);
    let state = |session_config: SessionConfig| -> Result<SessionState> {
        let state = SessionStateBuilder::new()
            .with_config(session_config)
            .with_runtime_env(runtime.clone())
            .with_default_features()
            .build();
        Ok(with_functions(state)?)
    };
    let url = match config.backend {
        Backend::Ballista => config
            .ballista_url
            .clone()
            .ok_or_else(|| Error::Usage("engine.ballista_url is not set".into()))?,
        // The cluster keeps the state it starts with: start it without this session's scratch.
        _ => standalone_cluster(&state(base.clone())?).await?,
    };
    let session = state(base.with_extension(Arc::new(Scratch::new(lake))))?;
    let ctx = SessionContext::remote_with_state(&url, session).await?;
    // Upgrading the state for Ballista replaces its scalar functions with Ballista's set.
    for udf in super::functions::all() {
        ctx.register_udf(udf);
    }
    for udaf in super::functions::aggregates() {
        ctx.register_udaf(udaf);
    }
    Ok(ctx)
}

/// The `df://` address of this runtime's in-process cluster, started on first use.
async fn standalone_cluster(state: &SessionState) -> Result<String> {
    static CLUSTERS: Mutex<Option<HashMap<tokio::runtime::Id, String>>> = Mutex::new(None);
    let runtime = tokio::runtime::Handle::current().id();
    if let Some(url) = CLUSTERS
        .lock()
        .expect("cluster map")
        .get_or_insert_with(HashMap::new)
        .get(&runtime)
    {
        return Ok(url.clone());
    }
    let started = |e: ballista_core::error::BallistaError| Error::Ballista {
        context: "starting the in-process Ballista cluster".into(),
        source: Box::new(e),
    };
    let addr = ballista_scheduler::standalone::new_standalone_scheduler_from_state(state)
        .await
        .map_err(started)?;
    let scheduler_url = format!("http://localhost:{}", addr.port());
    let scheduler = loop {
        match ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient::connect(
            scheduler_url.clone(),
        )
        .await
        {
            Ok(client) => break client,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    let parallelism = state.config().ballista_standalone_parallelism();
    ballista_executor::new_standalone_executor_from_state(scheduler, parallelism, state)
        .await
        .map_err(started)?;
    let url = format!("df://localhost:{}", addr.port());
    CLUSTERS
        .lock()
        .expect("cluster map")
        .get_or_insert_with(HashMap::new)
        .insert(runtime, url.clone());
    Ok(url)
}

/// `state` with pulse's SQL functions registered.
fn with_functions(mut state: SessionState) -> datafusion::error::Result<SessionState> {
    for udf in super::functions::all() {
        state.register_udf(Arc::new(udf))?;
    }
    for udaf in super::functions::aggregates() {
        state.register_udaf(Arc::new(udaf))?;
    }
    Ok(state)
}

/// What a scheduler or executor process uses for every session: Ballista's defaults, pulse's
/// functions, and a runtime that can read `lake` and spills beyond `engine.memory_limit`.
fn process_state(
    engine: &EngineConfig,
    lake: &Lake,
) -> Result<impl Fn(SessionConfig) -> datafusion::error::Result<SessionState> + Send + Sync> {
    let runtime = super::runtime_env(engine)?;
    if let Some((url, store)) = lake.engine_store()? {
        runtime.register_object_store(&url, store);
    }
    Ok(move |config: SessionConfig| {
        let state = ballista_core::utils::default_session_builder(config)?;
        with_functions(
            SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime.clone())
                .build(),
        )
    })
}

/// `pulse ballista-scheduler`: Ballista's scheduler, listening on `bind`, until it fails.
pub async fn run_scheduler(engine: &EngineConfig, lake: &Lake, bind: SocketAddr) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        ..SchedulerConfig::default()
    }
    .with_override_session_builder(Arc::new(process_state(engine, lake)?));
    let failed = |e: ballista_core::error::BallistaError| Error::Ballista {
        context: format!("Ballista scheduler on {bind}"),
        source: Box::new(e),
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(failed)?;
    ballista_scheduler::scheduler_process::start_server(cluster, bind, Arc::new(config))
        .await
        .map_err(failed)
}

/// `pulse ballista-executor`: a Ballista executor serving the scheduler at `scheduler`
/// (`df://host:port`), with Flight on `bind` and its gRPC on `grpc_port`, until it fails.
pub async fn run_executor(
    engine: &EngineConfig,
    lake: &Lake,
    scheduler: &str,
    bind: SocketAddr,
    grpc_port: u16,
) -> Result<()> {
    use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
    let address = url::Url::parse(scheduler)
        .ok()
        .filter(|u| u.scheme() == "df")
        .and_then(|u| Some((u.host_str()?.to_string(), u.port().unwrap_or(50050))))
        .ok_or_else(|| {
            Error::Usage(format!(
                "--scheduler `{scheduler}` is not a scheduler address: write df://<host>:<port>"
            ))
        })?;
    let session = process_state(engine, lake)?;
    let state = session(SessionConfig::new_with_ballista())?;
    let runtime = state.runtime_env().clone();
    let config = ExecutorProcessConfig {
        bind_host: bind.ip().to_string(),
        port: bind.port(),
        grpc_port,
        scheduler_host: address.0,
        scheduler_port: address.1,
        vcores: engine.target_partitions,
        override_function_registry: Some(Arc::new((&state).into())),
        override_runtime_producer: Some(Arc::new(move |_| Ok(runtime.clone()))),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| Error::Ballista {
            context: format!("Ballista executor on {bind}"),
            source: Box::new(e),
        })
}

/// A Ballista session's place for in-memory tables: `<lake>/_scratch/<session>/<table>/`.
#[derive(Debug)]
pub struct Scratch {
    lake: Lake,
    rel: String,
}

impl Scratch {
    fn new(lake: &Lake) -> Scratch {
        Scratch {
            lake: lake.clone(),
            rel: format!("_scratch/{}", crate::lake::unique_suffix()),
        }
    }

    /// Write `batches` as the Parquet table `name` and register it in `ctx`.
    pub async fn register(
        &self,
        ctx: &SessionContext,
        name: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<()> {
        let dir = format!("{}/{name}", self.rel);
        let bytes = crate::lake::parquet::parquet_bytes(&schema, batches)?;
        self.lake.write(&format!("{dir}/part-0.parquet"), &bytes)?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        ctx.register_listing_table(
            name,
            self.lake.table_url(&dir)?,
            options,
            Some(schema),
            None,
        )
        .await?;
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = self.lake.remove_all(&self.rel) {
            tracing::warn!("could not remove {}: {e}", self.lake.display(&self.rel));
        }
    }
}
