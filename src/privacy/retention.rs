//! Text retention (SPEC §8): with `[privacy] text_retention_days = N`, each run sets `title`
//! and `body` to null for events that occurred more than N days ago (demand analysis reads
//! only W and W′). Partitions already checked are remembered in
//! `<state_dir>/text-retention.json` by their file list, so a run reads only partitions that
//! are new to the cut (or gained late events), not the whole history again.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, NaiveDate, Utc};
use datafusion::arrow::array::{Array, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::record_batch::RecordBatch;

use crate::config::Config;
use crate::error::{IoContext, Result};
use crate::lake::Lake;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RetentionStats {
    pub partitions: usize,
    pub events: u64,
}

fn state_file(config: &Config) -> std::path::PathBuf {
    config.state_dir.join("text-retention.json")
}

/// Null the text of events older than the configured days, in every community of the lake.
pub fn apply(config: &Config, lake: &Lake) -> Result<RetentionStats> {
    let Some(days) = config.privacy.text_retention_days else {
        return Ok(RetentionStats::default());
    };
    let cutoff = Utc::now() - Duration::days(days as i64);
    let cutoff_us = cutoff.timestamp_micros();
    let cutoff_day = cutoff.date_naive();
    let path = state_file(config);
    let mut checked: BTreeMap<String, String> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut stats = RetentionStats::default();
    for community in lake.communities()? {
        let root = format!("{}/community_id={community}", crate::lake::EVENTS);
        let files = lake.list_files(&root)?;
        let mut listing: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in &files {
            if let Some((dir, _)) = f.rsplit_once('/') {
                listing.entry(dir.to_string()).or_default().push(f.clone());
            }
        }
        let fingerprint = |dir: &str| -> String {
            format!(
                "{:016x}",
                xxhash_rust::xxh3::xxh3_64(
                    listing
                        .get(dir)
                        .map(|f| f.join("\n"))
                        .unwrap_or_default()
                        .as_bytes()
                )
            )
        };
        let due = |dir: &str| -> bool {
            let Some(day) = dir
                .rsplit_once("event_date=")
                .and_then(|(_, d)| d.parse::<NaiveDate>().ok())
            else {
                return false;
            };
            // The cut's own day is always looked at (the cut moves through it); older days
            // only when their files changed since they were checked.
            day == cutoff_day || (day < cutoff_day && checked.get(dir) != Some(&fingerprint(dir)))
        };
        let (partitions, events, _) = crate::lake::compact::rewrite_partitions(
            lake,
            &community,
            |dir, _| due(dir),
            crate::lake::compact::Rewrite::Changed,
            |batch| null_text_before(batch, cutoff_us),
        )?;
        stats.partitions += partitions;
        stats.events += events;
        // Record what the older partitions hold now (rewritten ones under their new names).
        let files = lake.list_files(&root)?;
        let mut now_listing: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in &files {
            if let Some((dir, _)) = f.rsplit_once('/') {
                now_listing
                    .entry(dir.to_string())
                    .or_default()
                    .push(f.clone());
            }
        }
        for (dir, files) in now_listing {
            let older = dir
                .rsplit_once("event_date=")
                .and_then(|(_, d)| d.parse::<NaiveDate>().ok())
                .is_some_and(|d| d < cutoff_day);
            if older {
                checked.insert(
                    dir,
                    format!(
                        "{:016x}",
                        xxhash_rust::xxh3::xxh3_64(files.join("\n").as_bytes())
                    ),
                );
            }
        }
    }
    std::fs::create_dir_all(&config.state_dir)
        .io_context(|| format!("creating {}", config.state_dir.display()))?;
    crate::lake::write_atomic(&path, &serde_json::to_vec(&checked)?)?;
    Ok(stats)
}

/// `batch` with title and body null where occurred_at < `cutoff_us`; the count of events
/// whose text was cleared.
fn null_text_before(batch: &RecordBatch, cutoff_us: i64) -> Result<(RecordBatch, u64, u64)> {
    let schema = batch.schema();
    let (Ok(at), Ok(title), Ok(body)) = (
        schema.index_of("occurred_at"),
        schema.index_of("title"),
        schema.index_of("body"),
    ) else {
        return Ok((batch.clone(), 0, 0));
    };
    let Some(at) = batch
        .column(at)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
    else {
        return Ok((batch.clone(), 0, 0));
    };
    let old: Vec<bool> = (0..batch.num_rows())
        .map(|i| at.is_valid(i) && at.value(i) < cutoff_us)
        .collect();
    let mut cleared = vec![false; batch.num_rows()];
    let mut columns = batch.columns().to_vec();
    for index in [title, body] {
        let Some(text) = batch.column(index).as_any().downcast_ref::<StringArray>() else {
            continue;
        };
        let new: StringArray = text
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                Some(_) if old[i] => {
                    cleared[i] = true;
                    None
                }
                other => other,
            })
            .collect();
        columns[index] = Arc::new(new);
    }
    let n = cleared.iter().filter(|c| **c).count() as u64;
    if n == 0 {
        return Ok((batch.clone(), 0, 0));
    }
    Ok((RecordBatch::try_new(schema, columns)?, n, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    #[test]
    fn text_before_the_cut_is_cleared_and_the_rest_kept() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "occurred_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("title", DataType::Utf8, true),
            Field::new("body", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from(vec![10, 19, 20, 30]).with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![
                    Some("old"),
                    None,
                    Some("edge"),
                    Some("new"),
                ])),
                Arc::new(StringArray::from(vec![
                    None,
                    Some("old body"),
                    Some("b"),
                    Some("b"),
                ])),
            ],
        )
        .unwrap();
        let (out, cleared, _) = null_text_before(&batch, 20).unwrap();
        assert_eq!(cleared, 2, "the two events before the cut had text");
        let text = |i: usize| {
            let a = out
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            (0..a.len())
                .map(|r| a.is_valid(r).then(|| a.value(r).to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            text(1),
            [None, None, Some("edge".into()), Some("new".into())]
        );
        assert_eq!(text(2), [None, None, Some("b".into()), Some("b".into())]);
        let (_, again, _) = null_text_before(&out, 20).unwrap();
        assert_eq!(again, 0, "a second pass changes nothing");
    }
}
