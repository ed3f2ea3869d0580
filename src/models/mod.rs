//! The metric models (SPEC §4): the SQL project in `queries/` ([`project`]), run by DataFusion
//! in dependency order.
//!
//! A model is a file `queries/intermediate/<name>.sql` (a helper, kept in memory for the models
//! after it) or `queries/marts/<name>.sql` (a metric table of SPEC §5, written to
//! `<lake>/metrics/<name>/community_id=<c>/as_of=<D>/part-0.parquet`). Its header comment says
//! what it computes and which SPEC section it implements, and may declare data tests
//! (`-- test unique: a, b`, `-- test accepted_values: col = v1, v2`). PageRank is the one model
//! written in Rust ([`pagerank`]; it reads `pagerank_edges`, and `member_influence` reads it).
//!
//! Dependencies come from the SQL itself: each model's statement is parsed with DataFusion's
//! parser and its table references resolved ([`referenced_tables`]: CTE names are not
//! references); a model depends on every other model it reads. Everything else a model reads is
//! a lake table of the catalog ([`crate::engine::catalog`]: `events`, the rollups), a
//! parameter table ([`PARAMETER_TABLES`]), or one of two tables a run registers before the
//! models: the tiers at the start of W and the check-in state the streaks continue from
//! ([`streaks`]). Models run in topological order, which names a cycle.
//!
//! Values — dates, weights, thresholds — are bound parameters (`$name` in the SQL); lists from
//! the config (point rules, keywords, active types, excluded members) are small parameter
//! tables (`p_*`). Nothing from the config is pasted into SQL text.
//!
//! Before the models run, the rollups ([`rollups`]) are brought up to date, so the models read
//! compact per-day tables plus the raw events of W and W′ only.

pub mod pagerank;
mod params;
pub mod project;
pub mod rollups;
pub mod streaks;

pub use params::{
    local_midnight, parameters, register_parameter_tables, RunWindow, PARAMETER_TABLES,
};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;

use crate::config::{CommunitySettings, Config};
use crate::engine::catalog;
use crate::error::{Error, Result};
use crate::lake::parquet::{conform, write_parquet};
use crate::lake::Lake;
use params::string_column;
use project::Kind;

/// How a model is computed.
#[derive(Debug, Clone)]
pub enum Body {
    Sql(&'static str),
    /// PageRank over the rows of `pagerank_edges` (source, target, weight).
    PageRank,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub name: &'static str,
    /// [`Kind::Mart`]: written to the lake as the metric table `name`; [`Kind::Intermediate`]:
    /// kept in memory for the models after it.
    pub kind: Kind,
    pub body: Body,
    pub depends_on: Vec<String>,
    pub tests: Vec<DataTest>,
}

/// A check of a model's output, declared in its header (dbt's schema tests): a run whose
/// numbers break one fails instead of delivering them.
#[derive(Debug, Clone, PartialEq)]
pub enum DataTest {
    /// `-- test unique: a, b`: no two rows share these columns.
    Unique(Vec<String>),
    /// `-- test accepted_values: col = v1, v2`: the column only takes these values.
    AcceptedValues { column: String, values: Vec<String> },
}

impl DataTest {
    /// SQL counting the rows that break the test.
    fn sql(&self, model: &str) -> String {
        match self {
            DataTest::Unique(columns) => format!(
                "SELECT count(*) FROM (SELECT {c} FROM {model} GROUP BY {c} HAVING count(*) > 1)",
                c = columns.join(", ")
            ),
            DataTest::AcceptedValues { column, values } => {
                let list: Vec<String> = values
                    .iter()
                    .map(|v| format!("'{}'", v.replace('\'', "''")))
                    .collect();
                format!(
                    "SELECT count(*) FROM {model} WHERE {column} NOT IN ({})",
                    list.join(", ")
                )
            }
        }
    }
}

impl std::fmt::Display for DataTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataTest::Unique(columns) => write!(f, "unique: {}", columns.join(", ")),
            DataTest::AcceptedValues { column, values } => {
                write!(f, "accepted_values: {column} = {}", values.join(", "))
            }
        }
    }
}

/// Values of `-- <key>: …` lines in a model's header comment.
fn header_values<'a>(sql: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> {
    sql.lines()
        .take_while(|l| l.starts_with("--"))
        .filter_map(move |l| l.trim_start_matches("--").trim().strip_prefix(key))
        .filter_map(|rest| rest.strip_prefix(':'))
        .map(str::trim)
}

fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect()
}

fn declared_tests(sql: &str) -> Vec<DataTest> {
    let unique = header_values(sql, "test unique").map(|cols| DataTest::Unique(comma_list(cols)));
    let accepted = header_values(sql, "test accepted_values").filter_map(|spec| {
        let (column, values) = spec.split_once('=')?;
        Some(DataTest::AcceptedValues {
            column: column.trim().to_string(),
            values: comma_list(values),
        })
    });
    unique.chain(accepted).collect()
}

/// The tables `sql` (one statement) reads, by name as DataFusion normalizes them (unquoted
/// identifiers lowercased), without CTE names, sorted.
pub fn referenced_tables(sql: &str) -> Result<Vec<String>> {
    use datafusion::sql::parser::DFParser;
    let mut statements = DFParser::parse_sql(sql)?;
    let (Some(statement), true) = (statements.pop_front(), statements.is_empty()) else {
        return Err(Error::Project("expected one SQL statement".into()));
    };
    let (tables, _ctes) = datafusion::sql::resolve::resolve_table_references(&statement, true)?;
    let names: BTreeSet<String> = tables.iter().map(|t| t.table().to_string()).collect();
    Ok(names.into_iter().collect())
}

/// Every model, in an order where each comes after what it depends on.
pub fn models() -> Result<Vec<Model>> {
    let files: Vec<project::SqlFile> = project::files()?
        .into_iter()
        .filter(|f| matches!(f.kind, Kind::Intermediate | Kind::Mart))
        .collect();
    let pagerank = Model {
        name: "pagerank",
        kind: Kind::Intermediate,
        body: Body::PageRank,
        depends_on: vec!["pagerank_edges".into()],
        tests: vec![DataTest::Unique(vec!["member_id".into()])],
    };
    let names: BTreeSet<&str> = files
        .iter()
        .map(|f| f.name)
        .chain([pagerank.name])
        .collect();
    let mut all = Vec::new();
    for f in files {
        let reads = referenced_tables(f.sql)
            .map_err(|e| Error::Project(format!("{}: cannot read its SQL: {e}", f.path())))?;
        all.push(Model {
            name: f.name,
            kind: f.kind,
            body: Body::Sql(f.sql),
            depends_on: reads
                .into_iter()
                .filter(|t| names.contains(t.as_str()))
                .collect(),
            tests: declared_tests(f.sql),
        });
    }
    all.push(pagerank);
    topological_order(all)
}

/// Kahn's algorithm; ties in name order so runs are reproducible. Names a cycle or an unknown
/// dependency.
pub fn topological_order(models: Vec<Model>) -> Result<Vec<Model>> {
    let names: BTreeSet<&str> = models.iter().map(|m| m.name).collect();
    for m in &models {
        if let Some(d) = m.depends_on.iter().find(|d| !names.contains(d.as_str())) {
            return Err(Error::Project(format!(
                "model `{}` depends on unknown model `{d}`",
                m.name
            )));
        }
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut pending: BTreeMap<&str, &Model> = models.iter().map(|m| (m.name, m)).collect();
    let mut order = Vec::new();
    while !pending.is_empty() {
        let ready: Vec<&str> = pending
            .values()
            .filter(|m| m.depends_on.iter().all(|d| done.contains(d.as_str())))
            .map(|m| m.name)
            .collect();
        if ready.is_empty() {
            let cycle: Vec<&str> = pending.keys().copied().collect();
            return Err(Error::Project(format!(
                "models depend on each other in a cycle: {}",
                cycle.join(", ")
            )));
        }
        for name in ready {
            order.push(pending.remove(name).expect("pending").clone());
            done.insert(name);
        }
    }
    Ok(order)
}

/// What one community's run produced.
#[derive(Debug, Clone)]
pub struct CommunityRun {
    pub community: String,
    pub window: RunWindow,
    pub rollups: rollups::RefreshStats,
    /// Rows per metric table.
    pub tables: Vec<(&'static str, usize)>,
    pub seconds: f64,
}

/// Compute every metric table of one community for one as_of, and replace their partitions.
pub async fn run_community(
    config: &Config,
    lake: &Lake,
    settings: &CommunitySettings,
    as_of: NaiveDate,
) -> Result<CommunityRun> {
    let started = std::time::Instant::now();
    let _return_freed_memory = crate::engine::memory::ReturnFreedMemory::start();
    let window = RunWindow::new(as_of, settings.window_days, settings.timezone);
    // A community without a single event has nothing to compute: its tables are written empty
    // without starting an engine (and Ballista 55 can stall on plans over zero files).
    let engine = if rollups::has_events(lake, &settings.id)? {
        let ctx = crate::engine::session(&config.engine, lake).await?;
        register_parameter_tables(&ctx, settings).await?;
        let refreshed = rollups::refresh(&ctx, lake, settings).await?;
        tracing::debug!(community = %settings.id, seconds = started.elapsed().as_secs_f64(), "rollups up to date");
        streaks::register_state(&ctx, lake, settings, as_of).await?;
        tracing::debug!(community = %settings.id, seconds = started.elapsed().as_secs_f64(), "check-in state up to date");
        Some((ctx, refreshed))
    } else {
        None
    };
    let params = parameters(settings, &window);
    let stage = lake.stage("run")?;
    let staging = stage.path();
    let mut swaps = Vec::new();
    let mut tables = Vec::new();
    let models = models()?;
    let last_readers = last_readers(&models);
    for (position, model) in models.iter().enumerate() {
        let batches = match &engine {
            None => Vec::new(),
            Some((ctx, _)) => {
                let model_started = std::time::Instant::now();
                let (schema, batches) =
                    compute(ctx, model, &params)
                        .await
                        .map_err(|e| Error::Model {
                            model: model.name.to_string(),
                            community: settings.id.clone(),
                            source: Box::new(e),
                        })?;
                let computed = model_started.elapsed().as_secs_f64();
                crate::engine::register_batches(ctx, model.name, schema, batches.clone()).await?;
                run_tests(ctx, model, &settings.id).await?;
                // Outputs no later model reads are let go now, not at the end of the run: at
                // 100M events they are hundreds of MiB, outside the engine's memory limit.
                for done in std::iter::once(model.name)
                    .chain(model.depends_on.iter().map(String::as_str))
                    .filter(|name| last_readers.get(name).copied().unwrap_or(position) == position)
                {
                    ctx.deregister_table(done)?;
                }
                tracing::debug!(model = model.name, community = %settings.id, seconds = model_started.elapsed().as_secs_f64(), compute_seconds = computed, "model computed");
                batches
            }
        };
        if model.kind == Kind::Mart {
            let schema = catalog::table(model.name)
                .ok_or_else(|| {
                    Error::Project(format!("mart `{}` has no table in the catalog", model.name))
                })?
                .file_schema;
            let conformed = batches
                .iter()
                .map(|b| conform(b, &schema))
                .collect::<Result<Vec<_>>>()?;
            let dir = staging.join(model.name);
            write_parquet(&dir.join("part-0.parquet"), &schema, &conformed)?;
            let target = format!(
                "{}/community_id={}/as_of={as_of}",
                crate::lake::metrics_path(model.name),
                settings.id
            );
            swaps.push((dir, target));
            tables.push((model.name, conformed.iter().map(|b| b.num_rows()).sum()));
        }
    }
    lake.replace_dirs(&swaps)?;
    drop(stage);
    Ok(CommunityRun {
        community: settings.id.clone(),
        window,
        rollups: engine.map(|(_, refreshed)| refreshed).unwrap_or_default(),
        tables,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// For each model read by another, the position (in `models`, which is in dependency order) of
/// the last model that reads it (`depends_on` names only models).
fn last_readers(models: &[Model]) -> BTreeMap<&str, usize> {
    let mut last = BTreeMap::new();
    for (position, model) in models.iter().enumerate() {
        for read in &model.depends_on {
            last.insert(read.as_str(), position);
        }
    }
    last
}

/// Run a model's data tests against its (registered) output.
async fn run_tests(ctx: &SessionContext, model: &Model, community: &str) -> Result<()> {
    for test in &model.tests {
        let batches = ctx.sql(&test.sql(model.name)).await?.collect().await?;
        let failing = batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
            })
            .map_or(0, |a| a.value(0));
        if failing > 0 {
            return Err(Error::DataTest {
                model: model.name.to_string(),
                community: community.to_string(),
                test: test.to_string(),
                failing,
            });
        }
    }
    Ok(())
}

/// Run one model: its output schema and rows.
async fn compute(
    ctx: &SessionContext,
    model: &Model,
    params: &[(&'static str, ScalarValue)],
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    match model.body {
        Body::Sql(sql) => {
            let df = ctx
                .sql_with_options(sql, crate::engine::read_only())
                .await?
                .with_param_values(params.to_vec())?;
            let planned: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await?;
            // The batches' own schema (nullability may differ from the plan's) when there are any.
            let schema = batches.first().map(|b| b.schema()).unwrap_or(planned);
            Ok((schema, batches))
        }
        Body::PageRank => {
            let batch = pagerank_batch(ctx).await?;
            Ok((batch.schema(), vec![batch]))
        }
    }
}

/// Register in `ctx`, as views, the intermediate models that the queries `reads` read (and the
/// intermediate models those read), with `params` bound; nothing is computed or written until
/// a query reads them. This is how a session other than a models run (the report's) applies a rule
/// that lives in an intermediate model — the 48-hour answer rule of `answered_posts`, say —
/// without a second definition of it.
///
/// Only SQL models over the lake qualify: one that reads a mart (which the lake holds for
/// every as_of, not this run's) or PageRank (computed in Rust) is refused.
pub async fn register_views<'a>(
    ctx: &SessionContext,
    reads: impl IntoIterator<Item = &'a str>,
    params: &[(&'static str, ScalarValue)],
) -> Result<()> {
    let all = models()?;
    let by_name: BTreeMap<&str, &Model> = all.iter().map(|m| (m.name, m)).collect();
    let mut wanted: Vec<String> = Vec::new();
    for sql in reads {
        wanted.extend(referenced_tables(sql)?);
    }
    let mut needed: BTreeSet<&str> = BTreeSet::new();
    while let Some(name) = wanted.pop() {
        let Some(model) = by_name.get(name.as_str()) else {
            continue;
        };
        if model.kind == Kind::Mart || !needed.insert(model.name) {
            continue;
        }
        wanted.extend(model.depends_on.iter().cloned());
    }
    // `all` is in dependency order, so each view's inputs are registered before it.
    for model in all.iter().filter(|m| needed.contains(m.name)) {
        let unsuitable = model.depends_on.iter().find(|d| {
            by_name
                .get(d.as_str())
                .is_some_and(|m| m.kind == Kind::Mart || matches!(m.body, Body::PageRank))
        });
        let (Body::Sql(sql), None) = (&model.body, unsuitable) else {
            return Err(Error::Usage(format!(
                "model `{}` cannot be read outside a models run (it reads a mart or PageRank)",
                model.name
            )));
        };
        ctx.deregister_table(model.name)?;
        let view = ctx
            .sql_with_options(sql, crate::engine::read_only())
            .await?
            .with_param_values(params.to_vec())?
            .into_view();
        ctx.register_table(model.name, view)?;
    }
    Ok(())
}

/// The `pagerank` model: PageRank over `pagerank_edges`, as (member_id, pagerank).
async fn pagerank_batch(ctx: &SessionContext) -> Result<RecordBatch> {
    let rows = ctx
        .sql("SELECT source, target, CAST(weight AS DOUBLE) AS weight FROM pagerank_edges")
        .await?
        .collect()
        .await?;
    let mut edges = Vec::new();
    for b in &rows {
        let col = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("utf8")
                .clone()
        };
        let (from, to) = (col(0), col(1));
        let weight = b
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("f64")
            .clone();
        for i in 0..b.num_rows() {
            edges.push((
                from.value(i).to_string(),
                to.value(i).to_string(),
                weight.value(i),
            ));
        }
    }
    let ranks = pagerank::pagerank(&edges);
    let schema = Arc::new(Schema::new(vec![
        Field::new("member_id", DataType::Utf8, false),
        Field::new("pagerank", DataType::Float64, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            string_column(ranks.iter().map(|(m, _)| m.clone())),
            Arc::new(Float64Array::from_iter_values(
                ranks.iter().map(|(_, r)| *r),
            )),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_run_after_their_dependencies() {
        let order: Vec<&str> = models().unwrap().iter().map(|m| m.name).collect();
        let pos = |n: &str| order.iter().position(|m| *m == n).unwrap();
        assert!(pos("member_state") < pos("member_window"));
        assert!(pos("member_window") < pos("member_activity"));
        assert!(pos("member_activity") < pos("ranked_members"));
        assert!(pos("pagerank_edges") < pos("pagerank"));
        assert!(pos("pagerank") < pos("member_influence"));
        assert!(pos("answered_posts") < pos("demand_categories"));
        assert!(pos("post_categories") < pos("emerging_terms"));
        let sql_models = project::files()
            .unwrap()
            .iter()
            .filter(|f| matches!(f.kind, Kind::Intermediate | Kind::Mart))
            .count();
        assert_eq!(order.len(), sql_models + 1);
    }

    #[test]
    fn dependencies_are_the_models_a_model_reads() {
        let all = models().unwrap();
        let deps = |n: &str| -> Vec<String> {
            let mut d = all.iter().find(|m| m.name == n).unwrap().depends_on.clone();
            d.sort();
            d
        };
        assert_eq!(deps("member_state"), Vec::<String>::new());
        assert_eq!(deps("member_window"), ["engagement_edges", "member_state"]);
        assert_eq!(deps("pagerank_edges"), ["engagement_edges"]);
        assert_eq!(deps("member_tiers"), ["member_state", "member_window"]);
        assert_eq!(deps("tier_transitions"), ["member_tiers"]);
        assert_eq!(
            deps("demand_categories"),
            ["answered_posts", "member_state", "post_categories"]
        );
        assert_eq!(
            deps("member_influence"),
            ["member_state", "pagerank", "pagerank_edges"]
        );
        assert_eq!(deps("ranked_members"), ["member_activity"]);
        // CTE names are not references, even when a CTE is named like a table.
        let reads = referenced_tables(
            "WITH member_state AS (SELECT 1 AS x), b AS (SELECT * FROM member_state) \
             SELECT * FROM b JOIN Events e ON true WHERE $x IN (SELECT x FROM p_points)",
        )
        .unwrap();
        assert_eq!(reads, ["events", "p_points"]);
    }

    #[test]
    fn models_read_only_models_lake_tables_and_parameter_tables() {
        let all = models().unwrap();
        for m in &all {
            let Body::Sql(sql) = m.body else { continue };
            for t in referenced_tables(sql).unwrap() {
                assert!(
                    all.iter().any(|other| other.name == t)
                        || catalog::table(&t).is_some()
                        || PARAMETER_TABLES.contains(&t.as_str())
                        || t == streaks::CHECKIN_STATE,
                    "model `{}` reads `{t}`, which is neither a model, a lake table, a parameter table nor the check-in state",
                    m.name
                );
            }
        }
        for m in &all {
            if m.kind == Kind::Intermediate {
                assert!(
                    catalog::table(m.name).is_none(),
                    "intermediate model `{}` would hide the lake table of that name",
                    m.name
                );
            }
        }
    }

    #[test]
    fn data_tests_are_read_from_headers_and_catch_bad_rows() {
        let all = models().unwrap();
        let activity = all.iter().find(|m| m.name == "member_activity").unwrap();
        assert!(activity
            .tests
            .contains(&DataTest::Unique(vec!["member_id".into()])));
        assert!(activity.tests.iter().any(|t| matches!(t, DataTest::AcceptedValues { column, values } if column == "tier" && values.len() == 8)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let ctx = SessionContext::new();
            ctx.sql("CREATE TABLE m AS VALUES ('a', 'new'), ('a', 'vip')")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let model = Model {
                name: "m",
                kind: Kind::Intermediate,
                body: Body::PageRank,
                depends_on: vec![],
                tests: vec![
                    DataTest::Unique(vec!["column1".into()]),
                    DataTest::AcceptedValues {
                        column: "column2".into(),
                        values: vec!["new".into()],
                    },
                ],
            };
            let err = run_tests(&ctx, &model, "c1").await.unwrap_err().to_string();
            assert!(
                err.contains("failed its test `unique: column1`: 1 offending row"),
                "{err}"
            );
            let only_values = Model {
                tests: model.tests[1..].to_vec(),
                ..model
            };
            let err = run_tests(&ctx, &only_values, "c1")
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("accepted_values: column2 = new"), "{err}");
        });
    }

    #[test]
    fn a_cycle_is_named() {
        let m = |name: &'static str, dep: &str| Model {
            name,
            kind: Kind::Intermediate,
            body: Body::PageRank,
            depends_on: vec![dep.to_string()],
            tests: Vec::new(),
        };
        let err = topological_order(vec![m("a", "b"), m("b", "a")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cycle: a, b"), "{err}");
        let err = topological_order(vec![m("a", "zzz")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown model `zzz`"), "{err}");
    }

    #[test]
    fn windows_in_a_zone_with_dst() {
        // New York leaves DST on 2026-11-01: that local day is 25 hours long.
        let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let w = RunWindow::new(NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(), 1, tz);
        assert_eq!(w.w_start, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        assert_eq!(w.as_of_ts - w.w_start_ts, 25 * 3_600_000_000);
        assert_eq!(
            w.as_of_ts,
            crate::event::parse_timestamp("2026-11-02T05:00:00Z").unwrap()
        );
    }
}
