//! Ranked member lists (SPEC §4.7) for incentive systems, delivered by every `[[sinks]]` entry
//! after the models: `file` sinks write `<path>/<community>/<as_of>.{csv,json,parquet}`
//! atomically; `webhook` sinks POST signed Standard Webhooks messages ([`webhook`]).
//!
//! The list is the `ranked_members` partition joined with each member's activity components
//! (the report's `top_members` query, without its limit), with `community_id` and `as_of`.
//! Every delivery is recorded in `<state_dir>/deliveries.jsonl` (`pulse deliveries` lists it).

pub mod webhook;

use std::path::PathBuf;

use chrono::NaiveDate;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::config::{SinkConfig, SinkFormat};
use crate::error::{Error, IoContext, Result};
use crate::report::read::{decode, Queries, RankedMember};
use crate::state::StateDir;

/// The ranked list of one community and as_of.
#[derive(Debug, Clone)]
pub struct RankedList {
    pub community: String,
    pub as_of: NaiveDate,
    /// First and last local day of W.
    pub window: (NaiveDate, NaiveDate),
    pub batches: Vec<RecordBatch>,
    pub members: Vec<RankedMember>,
}

impl RankedList {
    pub async fn load(q: &Queries, community: &str) -> Result<RankedList> {
        // One query: the files take the batches, the webhooks the decoded rows.
        let batches = q.batches("top_members", i64::MAX).await?;
        Ok(RankedList {
            community: community.to_string(),
            as_of: q.window.as_of,
            window: (q.window.w_start, q.window.as_of - chrono::Duration::days(1)),
            members: decode("top_members", &batches)?,
            batches,
        })
    }

    /// A fingerprint of the list's content: equal lists have equal fingerprints.
    pub fn fingerprint(&self) -> String {
        let body = serde_json::to_vec(&(&self.community, self.as_of.to_string(), &self.members))
            .expect("members serialize");
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&body))
    }
}

/// One line of `deliveries.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// `file:<path>` or `webhook:<url>`.
    pub sink: String,
    pub community: String,
    #[serde(with = "crate::state::iso_date")]
    pub as_of: NaiveDate,
    /// The message id (webhook-id), or the list fingerprint for files.
    pub id: String,
    pub page: u32,
    pub pages: u32,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    /// The id of the earlier, different list of the same community and as_of this one replaces.
    pub supersedes: Option<String>,
    pub at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Delivered,
    /// Not delivered after every attempt (a dead letter was written); retried by the next run.
    Failed,
    /// The receiver answered 410 Gone: the sink is disabled until re-enabled.
    Disabled,
    /// Re-enabled by the operator (`pulse deliveries --enable`) after being disabled.
    Enabled,
}

/// Re-enable a disabled webhook sink (`url`): later runs deliver to it again.
pub fn enable(state: &StateDir, url: &str) -> Result<bool> {
    let name = format!("webhook:{url}");
    let ledger = ledger(state);
    let disabled = ledger
        .read()?
        .into_iter()
        .rev()
        .find(|r| r.sink == name)
        .filter(|r| r.status == DeliveryStatus::Disabled);
    let Some(last) = disabled else {
        return Ok(false);
    };
    ledger.append(&DeliveryRecord {
        status: DeliveryStatus::Enabled,
        attempts: 0,
        http_status: None,
        error: None,
        supersedes: None,
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ..last
    })?;
    Ok(true)
}

pub fn ledger(state: &StateDir) -> crate::state::Ledger<DeliveryRecord> {
    state.ledger("deliveries")
}

/// The name a sink has in run state and messages.
pub fn sink_name(sink: &SinkConfig) -> String {
    match sink {
        SinkConfig::File { path, .. } => format!("file:{}", path.display()),
        SinkConfig::Webhook { url, .. } => format!("webhook:{url}"),
    }
}

/// What one sink did with one list.
#[derive(Debug, Clone)]
pub struct SinkOutcome {
    pub sink: String,
    pub community: String,
    pub as_of: NaiveDate,
    pub detail: String,
    pub ok: bool,
    /// A dry run's requests, one line each: what would have been sent.
    pub planned: Vec<String>,
}

/// Options of a delivering run.
#[derive(Debug, Clone, Copy, Default)]
pub struct SinkOptions {
    /// Deliver again lists that were already delivered.
    pub redeliver: bool,
    /// Say what would be sent, send nothing.
    pub dry_run: bool,
}

/// Deliver `list` to every sink.
pub async fn deliver(
    sinks: &[SinkConfig],
    state: &StateDir,
    list: &RankedList,
    options: SinkOptions,
) -> Result<Vec<SinkOutcome>> {
    let mut outcomes = Vec::new();
    for sink in sinks {
        let name = sink_name(sink);
        let outcome = match sink {
            SinkConfig::File { path, formats } => {
                write_files(&name, path, formats, state, list, options)?
            }
            SinkConfig::Webhook { .. } => {
                webhook::deliver(&name, sink, state, list, options).await?
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Write the list as `<path>/<community>/<as_of>.<format>` for each format, atomically.
fn write_files(
    name: &str,
    root: &std::path::Path,
    formats: &[SinkFormat],
    state: &StateDir,
    list: &RankedList,
    options: SinkOptions,
) -> Result<SinkOutcome> {
    let dir = root.join(&list.community);
    let paths: Vec<PathBuf> = formats
        .iter()
        .map(|f| {
            dir.join(format!(
                "{}.{}",
                list.as_of,
                match f {
                    SinkFormat::Csv => "csv",
                    SinkFormat::Json => "json",
                    SinkFormat::Parquet => "parquet",
                }
            ))
        })
        .collect();
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let outcome = |detail: String| SinkOutcome {
        sink: name.to_string(),
        community: list.community.clone(),
        as_of: list.as_of,
        detail,
        ok: true,
        planned: Vec::new(),
    };
    if options.dry_run {
        return Ok(outcome(format!(
            "would write {} member(s) to {}",
            list.members.len(),
            shown.join(", ")
        )));
    }
    let schema = list
        .batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| Error::Sink {
            sink: name.to_string(),
            message: "the ranked list query returned no schema".into(),
            source: None,
        })?;
    for (format, path) in formats.iter().zip(&paths) {
        let bytes = encode(*format, &schema, &list.batches)?;
        crate::lake::write_atomic(path, &bytes)?;
    }
    ledger(state).append(&DeliveryRecord {
        sink: name.to_string(),
        community: list.community.clone(),
        as_of: list.as_of,
        id: list.fingerprint(),
        page: 1,
        pages: 1,
        status: DeliveryStatus::Delivered,
        attempts: 1,
        http_status: None,
        error: None,
        supersedes: None,
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })?;
    Ok(outcome(format!(
        "wrote {} member(s) to {}",
        list.members.len(),
        shown.join(", ")
    )))
}

/// The list in one file format.
fn encode(
    format: SinkFormat,
    schema: &datafusion::arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<u8>> {
    use datafusion::arrow::{csv, json};
    let mut out = Vec::new();
    match format {
        SinkFormat::Csv => {
            let mut w = csv::WriterBuilder::new().with_header(true).build(&mut out);
            if batches.iter().all(|b| b.num_rows() == 0) {
                w.write(&RecordBatch::new_empty(schema.clone()))?;
            }
            for b in batches {
                w.write(b)?;
            }
        }
        SinkFormat::Json => {
            let mut w = json::ArrayWriter::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
        }
        SinkFormat::Parquet => {
            let file =
                tempfile::NamedTempFile::new().io_context(|| "creating a temp file".into())?;
            crate::lake::parquet::write_parquet(file.path(), schema, batches)?;
            out = std::fs::read(file.path()).io_context(|| "reading the parquet file".into())?;
        }
    }
    Ok(out)
}
