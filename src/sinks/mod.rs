//! Ranked member lists (SPEC §4.7) for incentive systems, delivered by every `[[sinks]]` entry
//! after the models: `file` sinks write `<path>/<community>/<as_of>.{csv,json,parquet}`
//! atomically; `webhook` sinks POST signed Standard Webhooks messages ([`webhook`]).
//!
//! The list is the `ranked_members` partition joined with each member's activity components
//! (the report's `top_members` query, without its limit), with `community_id` and `as_of`.
//! Every delivery is recorded in `<state_dir>/deliveries.jsonl` (`pulse deliveries` lists it).
//!
//! CSV files are opened by people in spreadsheets: a text cell beginning with `=`, `+`, `-`,
//! `@`, a tab or a carriage return (or their full-width forms) would be run as a formula by
//! Excel, LibreOffice or WPS, so such cells are written with a leading `'` (OWASP's advice for
//! CSV injection). JSON and Parquet keep the values as they are.
//!
//! A sink is named `file:<path>` or `webhook:<url>` in records, logs and messages; a password
//! in the URL (`https://user:pass@host/…`) is shown as `***` ([`redact_url`]).

pub mod webhook;

use std::path::PathBuf;

use chrono::NaiveDate;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::config::{SinkConfig, SinkFormat};
use crate::error::{IoContext, Result};
use crate::report::read::{decode, Queries, RankedMember};
use crate::state::StateDir;

/// The ranked list of one community and as_of.
#[derive(Debug, Clone)]
pub struct RankedList {
    pub community: String,
    pub as_of: NaiveDate,
    /// First and last local day of W.
    pub window: (NaiveDate, NaiveDate),
    /// The list's columns (also when it has no rows, and so no batches).
    pub schema: datafusion::arrow::datatypes::SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub members: Vec<RankedMember>,
}

impl RankedList {
    pub async fn load(q: &Queries, community: &str) -> Result<RankedList> {
        // One query: the files take the batches, the webhooks the decoded rows.
        let (schema, batches) = q.batches_with_schema("top_members", i64::MAX).await?;
        Ok(RankedList {
            community: community.to_string(),
            as_of: q.window.as_of,
            window: (q.window.w_start, q.window.as_of - chrono::Duration::days(1)),
            members: decode("top_members", &batches)?,
            schema,
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
    let name = format!("webhook:{}", redact_url(url));
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
        SinkConfig::Webhook { url, .. } => format!("webhook:{}", redact_url(url)),
    }
}

/// `url` with the password of its user info replaced by `***` (`https://user:***@host/…`; a
/// user name alone, often a token, becomes `***@host`), for everything that shows or records
/// it. A URL without user info is returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => format!("{scheme}://***@{host}{tail}"),
        },
        None => url.to_string(),
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
            SinkConfig::File { path, formats, .. } => {
                let named = named_list(sink, state, list)?;
                write_files(&name, path, formats, state, &named, options)?
            }
            SinkConfig::Webhook { .. } => {
                let named = named_list(sink, state, list)?;
                webhook::deliver(&name, sink, state, &named, options).await?
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The list as `sink` gets it: with a `display_name` column (after `member_id`) and field from
/// the member directory when the sink sets `include_names`, else ids only.
fn named_list<'a>(
    sink: &SinkConfig,
    state: &StateDir,
    list: &'a RankedList,
) -> Result<std::borrow::Cow<'a, RankedList>> {
    use datafusion::arrow::array::{Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    if !sink.include_names() {
        return Ok(std::borrow::Cow::Borrowed(list));
    }
    let names = match crate::privacy::Directory::open_existing(state.root())? {
        Some(d) => d.names(list.members.iter().map(|m| m.member_id.as_str()))?,
        None => Default::default(),
    };
    let mut named = list.clone();
    for m in &mut named.members {
        m.display_name = names.get(&m.member_id).cloned();
    }
    let at = list
        .schema
        .index_of("member_id")
        .map(|i| i + 1)
        .unwrap_or(0);
    let mut fields: Vec<Field> = list
        .schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.insert(at, Field::new("display_name", DataType::Utf8, true));
    named.schema = std::sync::Arc::new(Schema::new(fields));
    named.batches = list
        .batches
        .iter()
        .map(|b| {
            let ids = b
                .column_by_name("member_id")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
            let column: StringArray = match ids {
                Some(ids) => ids
                    .iter()
                    .map(|id| id.and_then(|id| names.get(id).cloned()))
                    .collect(),
                None => std::iter::repeat_n(None::<String>, b.num_rows()).collect(),
            };
            let mut columns = b.columns().to_vec();
            columns.insert(at, std::sync::Arc::new(column));
            RecordBatch::try_new(named.schema.clone(), columns).map_err(Into::into)
        })
        .collect::<Result<_>>()?;
    Ok(std::borrow::Cow::Owned(named))
}

/// Write again, from the metric tables as they are now, the ranked-list files file sinks wrote
/// for one community and as_of (after `pulse forget` recomputed them). Returns how many
/// files were written.
pub async fn rewrite_files(
    config: &crate::config::Config,
    lake: &crate::lake::Lake,
    settings: &crate::config::CommunitySettings,
    as_of: NaiveDate,
) -> Result<usize> {
    let state = StateDir::new(&config.state_dir);
    let mut written = 0;
    let mut list = None;
    for sink in &config.sinks {
        let SinkConfig::File { path, formats, .. } = sink else {
            continue;
        };
        let dir = path.join(&settings.id);
        let existing = std::fs::read_dir(&dir)
            .map(|entries| {
                entries.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{as_of}."))
                })
            })
            .unwrap_or(false);
        if !existing {
            continue;
        }
        if list.is_none() {
            let q = Queries::open(config, lake, settings, as_of).await?;
            list = Some(RankedList::load(&q, &settings.id).await?);
        }
        let list = named_list(sink, &state, list.as_ref().expect("loaded above"))?;
        write_files(
            &sink_name(sink),
            path,
            formats,
            &state,
            &list,
            SinkOptions {
                redeliver: true,
                dry_run: false,
            },
        )?;
        written += formats.len();
    }
    Ok(written)
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
    for (format, path) in formats.iter().zip(&paths) {
        let bytes = encode(*format, &list.schema, &list.batches)?;
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

/// Characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection), and
/// their full-width forms, which WPS and Excel in CJK locales treat the same way.
const FORMULA_STARTS: [char; 10] = ['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'];

/// `batch` with every text cell that begins with a [`FORMULA_STARTS`] character prefixed by
/// `'`, so spreadsheets show it as text instead of running it.
fn neutralise_formulas(batch: &RecordBatch) -> Result<RecordBatch> {
    use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    let risky = |v: &str| v.starts_with(FORMULA_STARTS);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for column in batch.columns() {
        let is_text = matches!(
            column.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        );
        if !is_text {
            columns.push(column.clone());
            continue;
        }
        let text = cast(column, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        if !text.iter().flatten().any(risky) {
            columns.push(column.clone());
            continue;
        }
        let safe: StringArray = text
            .iter()
            .map(|v| {
                v.map(|v| {
                    if risky(v) {
                        format!("'{v}")
                    } else {
                        v.to_string()
                    }
                })
            })
            .collect();
        columns.push(cast(&safe, column.data_type())?);
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
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
                w.write(&neutralise_formulas(b)?)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn list(members: &[&str]) -> RankedList {
        let schema = Arc::new(Schema::new(vec![
            Field::new("rank", DataType::Int64, false),
            Field::new("member_id", DataType::Utf8, false),
            Field::new("activity_score", DataType::Float64, true),
        ]));
        let batches = if members.is_empty() {
            Vec::new()
        } else {
            vec![RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(1..=members.len() as i64)),
                    Arc::new(StringArray::from(members.to_vec())),
                    Arc::new(Float64Array::from(vec![-1.5; members.len()])),
                ],
            )
            .unwrap()]
        };
        RankedList {
            community: "c1".into(),
            as_of: "2026-11-23".parse().unwrap(),
            window: ("2026-10-24".parse().unwrap(), "2026-11-22".parse().unwrap()),
            schema,
            batches,
            members: Vec::new(),
        }
    }

    fn write(
        list: &RankedList,
        formats: &[SinkFormat],
    ) -> (tempfile::TempDir, Result<SinkOutcome>) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let out = write_files(
            "file:x",
            &dir.path().join("lists"),
            formats,
            &state,
            list,
            SinkOptions::default(),
        );
        (dir, out)
    }

    #[test]
    fn csv_cells_that_spreadsheets_would_run_as_formulas_are_quoted() {
        let members = [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "＝1+1",
            "u42",
            "a=b",
        ];
        let (dir, out) = write(&list(&members), &[SinkFormat::Csv, SinkFormat::Json]);
        out.unwrap();
        let csv = std::fs::read_to_string(dir.path().join("lists/c1/2026-11-23.csv")).unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let cells: Vec<(String, String)> = reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[1].to_string(), r[2].to_string())
            })
            .collect();
        let expected: Vec<String> = members
            .iter()
            .map(|m| match *m {
                "u42" | "a=b" => m.to_string(),
                _ => format!("'{m}"),
            })
            .collect();
        assert_eq!(
            cells.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
            expected
        );
        // Numbers are numbers, not text: a negative score stays as it is.
        assert!(cells.iter().all(|c| c.1 == "-1.5"), "{cells:?}");
        // JSON is for programs: its values are not changed.
        let json = std::fs::read_to_string(dir.path().join("lists/c1/2026-11-23.json")).unwrap();
        assert!(json.contains(r#""member_id":"+1""#), "{json}");
    }

    #[test]
    fn an_empty_list_is_written_with_its_columns() {
        let formats = [SinkFormat::Csv, SinkFormat::Json, SinkFormat::Parquet];
        let (dir, out) = write(&list(&[]), &formats);
        out.unwrap();
        let base = dir.path().join("lists/c1/2026-11-23");
        assert_eq!(
            std::fs::read_to_string(base.with_extension("csv")).unwrap(),
            "rank,member_id,activity_score\n"
        );
        assert_eq!(
            std::fs::read_to_string(base.with_extension("json")).unwrap(),
            "[]\n"
        );
        let parquet = std::fs::File::open(base.with_extension("parquet")).unwrap();
        let reader =
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                parquet,
            )
            .unwrap();
        assert_eq!(reader.schema().fields().len(), 3);
    }

    #[test]
    fn passwords_in_sink_urls_are_redacted() {
        assert_eq!(
            redact_url("https://user:s3cret@hooks.example.com/a?b=c"),
            "https://user:***@hooks.example.com/a?b=c"
        );
        assert_eq!(
            redact_url("https://hooks.example.com/x@y"),
            "https://hooks.example.com/x@y"
        );
        assert_eq!(
            redact_url("http://t0ken@host:8080/"),
            "http://***@host:8080/"
        );
        let sink: SinkConfig = toml::from_str(
            "kind = \"webhook\"\nurl = \"https://u:p4ss@h/x\"\nsecret_env = \"S\"\n",
        )
        .unwrap();
        assert_eq!(sink_name(&sink), "webhook:https://u:***@h/x");
    }
}
