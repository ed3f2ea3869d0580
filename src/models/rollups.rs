//! Incremental rollups: the reason a daily run's cost follows the window, not the history.
//!
//! Each rollup (`queries/rollup_*.sql`) is computed per UTC `event_date` partition of `events`
//! and stored at `<lake>/rollups/<name>/community_id=<c>/event_date=<d>/part-<fingerprint>.parquet`.
//! The fingerprint hashes the rollup's SQL, the community's timezone (local days depend on it)
//! and the names of the event files in that partition. Event files are content-named and only
//! ever added, so a partition whose file list is unchanged has a valid rollup; a partition that
//! gained files (late events) or whose timezone changed is recomputed, and nothing else is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, Date32Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;

use crate::error::{IoContext, Result};
use crate::lake::Lake;

/// The rollups, by table name, with their SQL.
pub const ROLLUPS: [(&str, &str); 3] = [
    (
        "member_day_types",
        include_str!("../../queries/rollup_member_day_types.sql"),
    ),
    (
        "member_edges",
        include_str!("../../queries/rollup_member_edges.sql"),
    ),
    (
        "membership_events",
        include_str!("../../queries/rollup_membership_events.sql"),
    ),
];

/// At most this many event partitions are rolled up by one query, to bound memory.
const DAYS_PER_QUERY: usize = 31;

/// What a refresh did, for the run summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct RefreshStats {
    pub partitions: usize,
    pub refreshed: usize,
}

fn date_value(d: NaiveDate) -> ScalarValue {
    ScalarValue::Date32(Some(
        (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32,
    ))
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
        ("from_date", date_value(from)),
        ("to_date", date_value(to)),
    ]
}

/// The file schema of each rollup (its SQL's output without `event_date`), found by planning the
/// SQL, so the schema cannot drift from the query.
pub async fn schemas(ctx: &SessionContext) -> Result<Vec<(&'static str, SchemaRef)>> {
    let day = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    let mut out = Vec::new();
    for (name, sql) in ROLLUPS {
        let df = ctx
            .sql(sql)
            .await?
            .with_param_values(params("", "UTC", day, day))?;
        out.push((name, without_event_date(df.schema().as_arrow())?));
    }
    Ok(out)
}

/// A rollup's file schema: its output without the partition column.
fn without_event_date(schema: &datafusion::arrow::datatypes::Schema) -> Result<SchemaRef> {
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).name() != "event_date")
        .collect();
    Ok(std::sync::Arc::new(schema.project(&keep)?))
}

/// The event partitions of `community`: UTC date → sorted file names.
fn event_partitions(lake: &Lake, community: &str) -> Result<BTreeMap<NaiveDate, Vec<String>>> {
    let dir = lake.events_dir().join(format!("community_id={community}"));
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).io_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.io_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(date) = name
            .strip_prefix("event_date=")
            .and_then(|d| d.parse::<NaiveDate>().ok())
        else {
            continue;
        };
        let mut files: Vec<String> = std::fs::read_dir(entry.path())
            .io_context(|| format!("listing {}", entry.path().display()))?
            .filter_map(|f| f.ok())
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".parquet") && !f.starts_with(['.', '_']))
            .collect();
        files.sort();
        if !files.is_empty() {
            out.insert(date, files);
        }
    }
    Ok(out)
}

fn fingerprint(sql: &str, tz: &str, files: &[String]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [sql, tz]
        .into_iter()
        .chain(files.iter().map(String::as_str))
    {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    format!("part-{:016x}.parquet", h.digest())
}

fn partition_dir(lake: &Lake, table: &str, community: &str, date: NaiveDate) -> PathBuf {
    lake.rollups_dir(table)
        .join(format!("community_id={community}"))
        .join(format!("event_date={date}"))
}

/// Bring every rollup of `community` up to date with its events.
pub async fn refresh(
    ctx: &SessionContext,
    lake: &Lake,
    community: &str,
    tz: &str,
) -> Result<RefreshStats> {
    let partitions = event_partitions(lake, community)?;
    let mut stats = RefreshStats {
        partitions: partitions.len(),
        refreshed: 0,
    };
    let staging = lake
        .staging_dir()
        .join(format!("rollup-{}", crate::lake::unique_suffix()));
    for (table, sql) in ROLLUPS {
        let stale: Vec<(NaiveDate, String)> = partitions
            .iter()
            .map(|(date, files)| (*date, fingerprint(sql, tz, files)))
            .filter(|(date, name)| {
                !partition_dir(lake, table, community, *date)
                    .join(name)
                    .exists()
            })
            .collect();
        stats.refreshed = stats.refreshed.max(stale.len());
        for chunk in contiguous_chunks(&stale) {
            let (from, to) = (chunk[0].0, chunk[chunk.len() - 1].0);
            let df = ctx
                .sql(sql)
                .await?
                .with_param_values(params(community, tz, from, to))?;
            let schema = without_event_date(df.schema().as_arrow())?;
            let batches = df.collect().await?;
            let mut swaps = Vec::new();
            for (date, name) in chunk {
                let staged_dir = staging.join(table).join(date.to_string());
                write_partition(&batches, &schema, *date, &staged_dir.join(name))?;
                swaps.push((staged_dir, partition_dir(lake, table, community, *date)));
            }
            lake.replace_dirs(&swaps)?;
        }
    }
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .io_context(|| format!("removing {}", staging.display()))?;
    }
    Ok(stats)
}

/// Runs of consecutive dates, at most DAYS_PER_QUERY long.
fn contiguous_chunks(stale: &[(NaiveDate, String)]) -> Vec<&[(NaiveDate, String)]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    for i in 1..=stale.len() {
        let breaks = i == stale.len()
            || i - start == DAYS_PER_QUERY
            || stale[i].0 != stale[i - 1].0 + chrono::Duration::days(1);
        if breaks {
            chunks.push(&stale[start..i]);
            start = i;
        }
    }
    chunks
}

/// Write the rows of `batches` whose `event_date` is `date` (without that column) to `path`;
/// an empty file when there are none, so the partition is known to be up to date.
fn write_partition(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    date: NaiveDate,
    path: &Path,
) -> Result<()> {
    let target = date_value(date);
    let mut rows = Vec::new();
    for batch in batches {
        let dates = batch
            .column_by_name("event_date")
            .and_then(|c| c.as_any().downcast_ref::<Date32Array>())
            .expect("rollups select event_date");
        let ScalarValue::Date32(Some(day)) = target else {
            unreachable!()
        };
        let mask = dates.iter().map(|d| Some(d == Some(day))).collect();
        let selected = filter_record_batch(batch, &mask)?;
        let keep: Vec<usize> = (0..selected.num_columns())
            .filter(|&i| selected.schema().field(i).name() != "event_date")
            .collect();
        rows.push(selected.project(&keep)?);
    }
    super::write_parquet(path, schema, &rows)
}
