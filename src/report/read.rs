//! The one reader of the metric tables: the SQL in `queries/report/` (discovered with the rest
//! of the project, [`crate::models::project`]) run over one community and as_of (and the
//! previous as_of, for deltas) with the run's parameters bound. The report ([`super::gather`])
//! and the ranked-list sinks ([`crate::sinks`]) both read through it. Nothing here recomputes a
//! metric: the report shows what the lake holds, so the two always agree.

use chrono::NaiveDate;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{CommunitySettings, Config};
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::models::RunWindow;

/// One member of a ranked list, as the report and the ranked-list sinks read it
/// (the `top_members` query).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedMember {
    pub rank: i64,
    pub member_id: String,
    pub activity_score: f64,
    pub points: f64,
    pub tier: String,
    pub participation: i64,
    pub interaction: i64,
    pub contribution: i64,
    pub retention: f64,
    pub active_days: i64,
    /// From the member directory, only for sinks with `include_names = true` (SPEC §8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// The as_of dates with metrics for `community`, ascending.
pub fn metric_dates(lake: &Lake, community: &str) -> Result<Vec<NaiveDate>> {
    let dir = format!(
        "{}/community_id={community}",
        crate::lake::metrics_path("member_activity")
    );
    let mut dates: Vec<NaiveDate> = lake
        .list_dirs(&dir)?
        .iter()
        .filter_map(|d| d.strip_prefix("as_of=").and_then(|d| d.parse().ok()))
        .collect();
    dates.sort();
    Ok(dates)
}

/// The report queries of one community and as_of, with their session and bound parameters.
/// The report and the ranked-list sinks share one.
pub struct Queries {
    ctx: SessionContext,
    params: Vec<(&'static str, ScalarValue)>,
    pub window: RunWindow,
    /// The as_of of the previous metrics of this community, if any.
    pub prev_as_of: Option<NaiveDate>,
    /// Where the member directory is (`<state_dir>`): reports show display names.
    pub state_dir: std::path::PathBuf,
}

impl Queries {
    /// A session over `lake` for the metrics of `settings` at `as_of`, which must exist.
    pub async fn open(
        config: &Config,
        lake: &Lake,
        settings: &CommunitySettings,
        as_of: NaiveDate,
    ) -> Result<Queries> {
        let dates = metric_dates(lake, &settings.id)?;
        if !dates.contains(&as_of) {
            return Err(Error::Usage(format!(
                "no metrics for community `{}` as_of {as_of}: run `pulse run --as-of {as_of} --community {}` first",
                settings.id, settings.id
            )));
        }
        let prev_as_of = dates.iter().rev().find(|d| **d < as_of).copied();
        let window = RunWindow::new(as_of, settings.window_days, settings.timezone);
        let ctx = crate::engine::session(&config.engine, lake).await?;
        crate::models::register_parameter_tables(&ctx, settings).await?;
        let mut params = crate::models::parameters(settings, &window);
        params.push((
            "prev_as_of",
            match prev_as_of {
                Some(d) => crate::engine::functions::date_scalar(d),
                None => ScalarValue::Date32(None),
            },
        ));
        // Report queries may read intermediate models (unanswered_posts reads answered_posts,
        // the one definition of SPEC §4.6's 48-hour rule). They are registered as views over
        // the lake, computed inside the query that reads them: one definition of each rule,
        // and nothing written to the lake that the models run does not write.
        let reports = crate::models::project::of_kind(crate::models::project::Kind::Report)?;
        crate::models::register_views(&ctx, reports.iter().map(|f| f.sql), &params).await?;
        Ok(Queries {
            ctx,
            params,
            window,
            prev_as_of,
            state_dir: config.state_dir.clone(),
        })
    }

    /// Run the report query `name` (at most `limit` rows where it has a LIMIT).
    pub async fn batches(&self, name: &str, limit: i64) -> Result<Vec<RecordBatch>> {
        Ok(self.batches_with_schema(name, limit).await?.1)
    }

    /// [`Queries::batches`] with the query's schema, which an empty result (no batches at
    /// all) does not carry.
    pub async fn batches_with_schema(
        &self,
        name: &str,
        limit: i64,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let sql = crate::models::project::sql(crate::models::project::Kind::Report, name)
            .expect("known report query");
        let mut params = self.params.clone();
        params.push(("limit", ScalarValue::Int64(Some(limit))));
        let df = self
            .ctx
            .sql_with_options(sql, crate::engine::read_only())
            .await?
            .with_param_values(params)?;
        let schema: SchemaRef = std::sync::Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(|e| Error::ReportQuery {
            query: name.to_string(),
            source: Box::new(e.into()),
        })?;
        Ok((schema, batches))
    }

    /// Run the report query `name` and read its rows into `T` (through Arrow's JSON writer, so
    /// the struct's field names are the query's column names; extra columns are ignored).
    pub async fn rows<T: DeserializeOwned>(&self, name: &str, limit: i64) -> Result<Vec<T>> {
        decode(name, &self.batches(name, limit).await?)
    }
}

/// Rows of the report query `name` (already run) as `T`, through Arrow's JSON writer.
pub fn decode<T: DeserializeOwned>(name: &str, batches: &[RecordBatch]) -> Result<Vec<T>> {
    let mut json = Vec::new();
    {
        let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut json);
        for b in batches {
            writer.write(b)?;
        }
        writer.finish()?;
    }
    if json.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&json).map_err(|e| Error::ReportQuery {
        query: name.to_string(),
        source: Box::new(e.into()),
    })
}
