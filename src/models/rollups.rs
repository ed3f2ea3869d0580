//! Incremental rollups: the reason a daily run's cost follows the window, not the history.
//!
//! Each rollup (`queries/rollups/<name>.sql`) is computed per UTC month of `events` partitions and
//! stored at `<lake>/rollups/<name>/community_id=<c>/event_month=<YYYY-MM-01>/part-<fingerprint>.parquet`
//! (rows keep their `event_date`, so models prune by it). A month is one file, so a year of
//! history is 12 small files to scan, not 365. The fingerprint hashes the rollup's SQL, the
//! community's timezone (local days depend on it), the names of the event files of the
//! month and, for a rollup that segments text (`post_words`), the segmentation rules and the
//! shipped word lists, for one that reads the community's active event types (`member_months`),
//! those types. Event files are content-named and only ever added, so a month whose file list is
//! unchanged has a valid rollup; a month that gained files (late events) or whose timezone or
//! active types changed is recomputed, and nothing else is. The parameter tables
//! (`models::params`) must be registered before a refresh.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;

use super::project::{self, Kind};
use crate::config::CommunitySettings;
use crate::engine::functions::date_scalar;
use crate::error::Result;
use crate::lake::Lake;

/// What a refresh did, for the run summary (counted in months).
#[derive(Debug, Default, Clone, Copy)]
pub struct RefreshStats {
    pub partitions: usize,
    pub refreshed: usize,
}

/// The first day of `date`'s month.
fn month_of(date: NaiveDate) -> NaiveDate {
    date.with_day(1).expect("day 1 exists")
}

fn params(
    community: &str,
    tz: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<(&'static str, ScalarValue)> {
    vec![
        ("community", ScalarValue::Utf8(Some(community.to_string()))),
        ("tz", ScalarValue::Utf8(Some(tz.to_string()))),
        ("from_date", date_scalar(from)),
        ("to_date", date_scalar(to)),
    ]
}

/// The event partitions of `community` by month: first day of the UTC month → every
/// `event_date=…/file` name of that month, sorted.
fn event_months(lake: &Lake, community: &str) -> Result<BTreeMap<NaiveDate, Vec<String>>> {
    let dir = format!("{}/community_id={community}", crate::lake::EVENTS);
    let mut out: BTreeMap<NaiveDate, Vec<String>> = BTreeMap::new();
    for file in lake.list_files(&dir)? {
        let name = &file[dir.len() + 1..];
        let Some((date, _)) = name
            .strip_prefix("event_date=")
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        let (Ok(date), true) = (date.parse::<NaiveDate>(), name.ends_with(".parquet")) else {
            continue;
        };
        out.entry(month_of(date))
            .or_default()
            .push(name.to_string());
    }
    for files in out.values_mut() {
        files.sort();
    }
    Ok(out)
}

/// Whether `community` has any event in the lake.
pub fn has_events(lake: &Lake, community: &str) -> Result<bool> {
    Ok(!event_months(lake, community)?.is_empty())
}

fn fingerprint(sql: &str, settings: &CommunitySettings, files: &[String]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    // A rollup that segments text also depends on the segmentation rules and word lists, one
    // that reads the active types on those (only there: other rollups keep the fingerprints,
    // and files, they had before).
    let words = sql
        .contains("post_terms(")
        .then(crate::engine::terms::rules_hash);
    let active_types = sql.contains("p_active_types").then(|| {
        let mut types: Vec<String> = settings
            .active_event_types
            .iter()
            .map(|t| t.to_string())
            .collect();
        types.sort();
        types.join(",")
    });
    for part in [sql, settings.timezone.name()]
        .into_iter()
        .chain(words.as_deref())
        .chain(active_types.as_deref())
        .chain(files.iter().map(String::as_str))
    {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    format!("part-{:016x}.parquet", h.digest())
}

fn partition_path(table: &str, community: &str, month: NaiveDate) -> String {
    format!(
        "{}/community_id={community}/event_month={month}",
        crate::lake::rollups_path(table)
    )
}

/// Bring every rollup of a community up to date with its events.
pub async fn refresh(
    ctx: &SessionContext,
    lake: &Lake,
    settings: &CommunitySettings,
) -> Result<RefreshStats> {
    let (community, tz) = (settings.id.as_str(), settings.timezone.name());
    let months = event_months(lake, community)?;
    let mut stats = RefreshStats {
        partitions: months.len(),
        refreshed: 0,
    };
    let stage = lake.stage("rollup")?;
    let staging = stage.path();
    for rollup in project::of_kind(Kind::Rollup)? {
        let (table, sql) = (rollup.name, rollup.sql);
        let mut swaps = Vec::new();
        for (month, files) in &months {
            let name = fingerprint(sql, settings, files);
            let target = partition_path(table, community, *month);
            if lake.exists(&format!("{target}/{name}"))? {
                continue;
            }
            let last = (*month + chrono::Months::new(1))
                .pred_opt()
                .expect("a month has a last day");
            let df = ctx
                .sql(sql)
                .await?
                .with_param_values(params(community, tz, *month, last))?;
            let schema: SchemaRef = std::sync::Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await?;
            let staged_dir = staging.join(table).join(month.to_string());
            crate::lake::parquet::write_parquet(&staged_dir.join(&name), &schema, &batches)?;
            swaps.push((staged_dir, target));
        }
        stats.refreshed = stats.refreshed.max(swaps.len());
        lake.replace_dirs(&swaps)?;
    }
    drop(stage);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalog's schema of each rollup (what readers are given) is what its SQL plans
    /// (what refresh writes).
    #[test]
    fn catalog_schemas_are_the_planned_ones() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
            let ctx = SessionContext::new();
            for udf in crate::engine::functions::all() {
                ctx.register_udf(udf);
            }
            crate::engine::catalog::register_all(&ctx, &lake)
                .await
                .unwrap();
            // The parameter table a rollup may read (`member_months`).
            ctx.sql("CREATE TABLE p_active_types (event_type VARCHAR NOT NULL) AS VALUES ('post')")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let rollups = project::of_kind(Kind::Rollup).unwrap();
            let day = crate::engine::functions::epoch();
            for r in &rollups {
                let df = ctx
                    .sql(r.sql)
                    .await
                    .unwrap()
                    .with_param_values(params("", "UTC", day, day))
                    .unwrap();
                let planned: SchemaRef = std::sync::Arc::new(df.schema().as_arrow().clone());
                let table = crate::engine::catalog::table(r.name).unwrap();
                assert_eq!(table.file_schema, planned, "rollup `{}`", r.name);
            }
            let in_catalog =
                crate::engine::catalog::of_kind(crate::engine::catalog::TableKind::Rollup);
            assert_eq!(
                in_catalog.len(),
                rollups.len(),
                "a rollup table without SQL"
            );
        });
    }
}
