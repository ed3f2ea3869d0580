//! The report's numbers: read back from the metric tables of one community and as_of (and the
//! previous report's as_of, for deltas) by the SQL in `queries/report/`. Nothing here
//! recomputes a metric: the report shows what the lake holds, so the two always agree.

use chrono::NaiveDate;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{CommunitySettings, Config};
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::models::RunWindow;

/// The report queries, compiled into the binary.
const QUERIES: [(&str, &str); 11] = [
    ("kpis", include_str!("../../queries/report/kpis.sql")),
    ("tiers", include_str!("../../queries/report/tiers.sql")),
    (
        "top_members",
        include_str!("../../queries/report/top_members.sql"),
    ),
    (
        "new_contributors",
        include_str!("../../queries/report/new_contributors.sql"),
    ),
    (
        "community_influence",
        include_str!("../../queries/report/community_influence.sql"),
    ),
    (
        "top_influencers",
        include_str!("../../queries/report/top_influencers.sql"),
    ),
    (
        "retention",
        include_str!("../../queries/report/retention.sql"),
    ),
    ("demand", include_str!("../../queries/report/demand.sql")),
    (
        "unanswered_posts",
        include_str!("../../queries/report/unanswered_posts.sql"),
    ),
    ("at_risk", include_str!("../../queries/report/at_risk.sql")),
    (
        "daily_active",
        include_str!("../../queries/report/daily_active.sql"),
    ),
];

/// Tiers in the order the report lists them (SPEC §4.3).

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
        crate::models::prepare_session(&ctx, lake).await?;
        crate::models::register_parameter_tables(&ctx, settings).await?;
        let mut params = crate::models::parameters(settings, &window);
        params.push((
            "prev_as_of",
            match prev_as_of {
                Some(d) => crate::models::date_scalar(d),
                None => ScalarValue::Date32(None),
            },
        ));
        Ok(Queries {
            ctx,
            params,
            window,
            prev_as_of,
        })
    }

    /// Run the report query `name` (at most `limit` rows where it has a LIMIT).
    pub async fn batches(&self, name: &str, limit: i64) -> Result<Vec<RecordBatch>> {
        let sql = QUERIES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, sql)| *sql)
            .expect("known report query");
        let mut params = self.params.clone();
        params.push(("limit", ScalarValue::Int64(Some(limit))));
        self.ctx
            .sql_with_options(sql, crate::engine::read_only())
            .await?
            .with_param_values(params)?
            .collect()
            .await
            .map_err(|e| Error::ReportQuery {
                query: name.to_string(),
                source: Box::new(e.into()),
            })
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

/// Gather the report of `settings` from its metric tables.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_query_has_a_header() {
        for (name, sql) in QUERIES {
            let header = sql.lines().next().unwrap_or("");
            assert!(
                header.starts_with(&format!("-- report {name}:")),
                "{name}: {header}"
            );
        }
    }
}
