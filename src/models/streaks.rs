//! Check-in streaks carried forward (SPEC §4.10), so a run's cost does not grow with the
//! history.
//!
//! A streak can be as old as the community, but a run reads only the last one or two months of
//! check-ins: `queries/intermediate/checkin_streaks.sql` continues from `checkin_state` — per
//! member, the streak ending on a month's last local day and the longest run up to it — and
//! reads only the days after. That state is the same model computed at the end of each month
//! from the state of the month before (a chain), stored at
//! `<lake>/rollups/checkin_state/community_id=<c>/local_month=<YYYY-MM-01>/part-<fingerprint>.parquet`.
//!
//! A run as of D continues from the end of the month two before D−1's month ([`state_through`]):
//! that month and the UTC months its local days can fall in (one either side) are over, so new
//! events rarely invalidate the stored state (east of UTC, events of the first local day of
//! D−1's month still land in the previous UTC month, which the state depends on: then that one
//! month is recomputed), and the run reads 32–62 days of check-ins. A month's fingerprint
//! hashes the model's SQL, the timezone, the fingerprint of the month before and the names of
//! the `member_day_types` rollup files of the three UTC months its local days can come from
//! (those names change whenever their events do: see [`super::rollups`]). So late events,
//! compaction or an erasure (`pulse forget`) in a month change that month's state and, through
//! the chain, every later one; the next run recomputes them once, and nothing else is
//! recomputed.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, Duration, Months, NaiveDate};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::prelude::SessionContext;

use super::project::{self, Kind};
use crate::config::CommunitySettings;
use crate::engine::functions::date_scalar;
use crate::error::{Error, Result};
use crate::lake::parquet::{conform, write_parquet};
use crate::lake::Lake;

/// The table `checkin_streaks` continues from.
pub const CHECKIN_STATE: &str = "checkin_state";

/// The model computing streaks, and the chain's months.
const MODEL: &str = "checkin_streaks";

/// Where the chain is stored.
fn state_dir(community: &str) -> String {
    format!(
        "{}/community_id={community}",
        crate::lake::rollups_path(CHECKIN_STATE)
    )
}

/// The columns of the state (and of the model's output).
pub fn state_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("member_id", DataType::Utf8, false),
        Field::new("checkin_streak", DataType::Int64, false),
        Field::new("longest_checkin_streak", DataType::Int64, false),
    ]))
}

fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).expect("day 1 exists")
}

fn month_end(month: NaiveDate) -> NaiveDate {
    month + Months::new(1) - Duration::days(1)
}

/// The last local day of the state a run as of `as_of` continues from: the end of the month
/// two before the month of D−1 (see the module docs).
pub fn state_through(as_of: NaiveDate) -> NaiveDate {
    month_start(as_of - Duration::days(1)) - Months::new(1) - Duration::days(1)
}

/// The parameters that bind the model to a state: `state_through` and the day after it.
pub fn state_parameters(through: NaiveDate) -> [(&'static str, ScalarValue); 2] {
    [
        ("state_through", date_scalar(through)),
        ("streak_from", date_scalar(through + Duration::days(1))),
    ]
}

/// Register in `ctx` the state a run as of `as_of` continues from, computing (and storing) the
/// months of the chain that are missing or out of date. The rollups must be up to date.
pub async fn register_state(
    ctx: &SessionContext,
    lake: &Lake,
    settings: &CommunitySettings,
    as_of: NaiveDate,
) -> Result<()> {
    let batches = state_at(ctx, lake, settings, state_through(as_of)).await?;
    crate::engine::register_batches(ctx, CHECKIN_STATE, state_schema(), batches).await
}

/// `member_day_types` rollup files of `community` by UTC month.
fn rollup_months(lake: &Lake, community: &str) -> Result<BTreeMap<NaiveDate, Vec<String>>> {
    let dir = format!(
        "{}/community_id={community}",
        crate::lake::rollups_path("member_day_types")
    );
    let mut out: BTreeMap<NaiveDate, Vec<String>> = BTreeMap::new();
    for file in lake.list_files(&dir)? {
        let name = &file[dir.len() + 1..];
        let month = name
            .strip_prefix("event_month=")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(month, _)| month.parse::<NaiveDate>().ok());
        if let Some(month) = month {
            out.entry(month).or_default().push(name.to_string());
        }
    }
    Ok(out)
}

/// The state at the end of local day `through` (the last day of a month).
async fn state_at(
    ctx: &SessionContext,
    lake: &Lake,
    settings: &CommunitySettings,
    through: NaiveDate,
) -> Result<Vec<RecordBatch>> {
    let sql = project::sql(Kind::Intermediate, MODEL)
        .ok_or_else(|| Error::Project(format!("queries/intermediate/{MODEL}.sql is missing")))?;
    let tz = settings.timezone.name();
    let months = rollup_months(lake, &settings.id)?;
    // The local days of the first UTC month with events can fall in the month before it.
    let Some(start) = months.keys().next().map(|m| *m - Months::new(1)) else {
        return Ok(Vec::new());
    };
    let mut chain: Vec<(NaiveDate, String)> = Vec::new();
    let mut month = start;
    while month <= month_start(through) {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let previous = chain.last().map_or("", |(_, fp)| fp.as_str());
        let neighbours = [month - Months::new(1), month, month + Months::new(1)];
        let files = neighbours
            .iter()
            .flat_map(|m| months.get(m).into_iter().flatten());
        for part in [sql, tz, previous]
            .into_iter()
            .chain(files.map(String::as_str))
        {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        chain.push((month, format!("part-{:016x}.parquet", h.digest())));
        month = month + Months::new(1);
    }
    let path = |(month, name): &(NaiveDate, String)| {
        format!("{}/local_month={month}/{name}", state_dir(&settings.id))
    };
    let mut stored = None;
    for (i, link) in chain.iter().enumerate().rev() {
        if lake.exists(&path(link))? {
            stored = Some(i);
            break;
        }
    }
    let mut state = match stored {
        Some(i) => read_state(lake, &path(&chain[i]))?,
        None => Vec::new(),
    };
    let todo = &chain[stored.map_or(0, |i| i + 1)..];
    if todo.is_empty() {
        return Ok(state);
    }
    let schema = state_schema();
    let stage = lake.stage("streaks")?;
    let mut swaps = Vec::new();
    let mut state_end = start - Duration::days(1);
    if let Some(i) = stored {
        state_end = month_end(chain[i].0);
    }
    for link in todo {
        let end = month_end(link.0);
        crate::engine::register_batches(ctx, CHECKIN_STATE, schema.clone(), state).await?;
        let mut params = vec![
            ("community", ScalarValue::Utf8(Some(settings.id.clone()))),
            ("last_day", date_scalar(end)),
            ("as_of", date_scalar(end + Duration::days(1))),
        ];
        params.extend(state_parameters(state_end));
        let batches = ctx
            .sql(sql)
            .await?
            .with_param_values(params)?
            .collect()
            .await?;
        state = batches
            .iter()
            .map(|b| conform(b, &schema))
            .collect::<Result<Vec<_>>>()?;
        let staged = stage.path().join(link.0.to_string());
        write_parquet(&staged.join(&link.1), &schema, &state)?;
        swaps.push((
            staged,
            format!("{}/local_month={}", state_dir(&settings.id), link.0),
        ));
        state_end = end;
    }
    lake.replace_dirs(&swaps)?;
    tracing::debug!(community = %settings.id, months = swaps.len(), "check-in state carried forward");
    Ok(state)
}

fn read_state(lake: &Lake, path: &str) -> Result<Vec<RecordBatch>> {
    let bytes = lake
        .read_many(&[path.to_string()])?
        .pop()
        .expect("one file asked, one read");
    let schema = state_schema();
    ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .build()?
        .map(|batch| conform(&batch?, &schema))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_run_continues_from_the_end_of_the_month_two_before_yesterdays() {
        // D−1 = 2026-11-29: state through the end of September, days read from October 1.
        assert_eq!(state_through(day("2026-11-30")), day("2026-09-30"));
        // D−1 = 2026-11-30, still November.
        assert_eq!(state_through(day("2026-12-01")), day("2026-09-30"));
        // D−1 = 2026-12-01: state through the end of October.
        assert_eq!(state_through(day("2026-12-02")), day("2026-10-31"));
        // Across a year and a leap February.
        assert_eq!(state_through(day("2028-03-15")), day("2028-01-31"));
        assert_eq!(state_through(day("2028-04-01")), day("2028-01-31"));
        assert_eq!(state_through(day("2028-04-02")), day("2028-02-29"));
        assert_eq!(month_end(day("2028-02-01")), day("2028-02-29"));
    }
}
