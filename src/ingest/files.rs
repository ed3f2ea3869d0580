//! `pulse import`: canonical events from NDJSON or CSV files into the lake.
//!
//! Files are read in blocks of whole lines, one block ahead on a thread of its own
//! ([`super::blocks`]); a block is parsed and validated on all cores part
//! by part, and each part is offered to the [`EventWriter`] in input order (so "first received
//! wins" follows the file order) while the next part is parsed. A bad line is quarantined with
//! its file, line number and reason; the rest of the file goes on. An NDJSON line longer than
//! [`MAX_LINE_BYTES`] is not parsed and not copied: it is quarantined by reference (file, line
//! number, its length and an xxh3-64 hash of its bytes), and one longer than the read buffer is
//! hashed as it streams past, never held.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

use super::blocks::{read_blocks, Block};
use crate::error::{Error, IoContext, Result};
use crate::event::{parse_json_line, validate, Event, RawFields};
use crate::lake::events::{EventWriter, ImportStats, WriterOptions};
use crate::lake::Lake;

/// Input file formats of `pulse import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// `.csv` files are CSV, everything else NDJSON.
    Auto,
    /// One JSON object per line with the SPEC §2 column names as keys.
    Ndjson,
    /// CSV with a header row of SPEC §2 column names; an empty cell is a null.
    Csv,
}

impl InputFormat {
    fn for_path(self, path: &Path) -> InputFormat {
        match self {
            InputFormat::Auto
                if path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("csv")) =>
            {
                InputFormat::Csv
            }
            InputFormat::Auto => InputFormat::Ndjson,
            other => other,
        }
    }
}

/// Lines per step of the parse → dedupe pipeline (a few MiB of NDJSON: small enough that the
/// pipeline fills and drains quickly within a block, large enough to split across cores).
const PIPELINE_LINES: usize = 8192;

/// The longest NDJSON line (one event) read; longer ones are quarantined by reference. The
/// webhook receiver refuses events longer than this too, so the spool never holds one.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The quarantine reason of an over-long line.
fn too_long(len: u64, hash: u64) -> String {
    format!(
        "line of {len} bytes is longer than the limit of {MAX_LINE_BYTES} bytes; not read (xxh3-64 {hash:016x})"
    )
}

/// Import `paths` into `lake`. The lake is locked for the duration.
pub fn import_files(
    lake: &Lake,
    paths: &[PathBuf],
    format: InputFormat,
    options: WriterOptions,
) -> Result<ImportStats> {
    let named: Vec<(PathBuf, String)> = paths
        .iter()
        .map(|p| (p.clone(), p.display().to_string()))
        .collect();
    import_named(lake, &named, format, options)
}

/// [`import_files`] for `(path, name)` pairs: each file is read from its path and named by
/// its name in logs and quarantine (export pickup imports a private copy of a dropped file
/// under the dropped file's name).
pub fn import_named(
    lake: &Lake,
    files: &[(PathBuf, String)],
    format: InputFormat,
    options: WriterOptions,
) -> Result<ImportStats> {
    let mut total_bytes = 0;
    for (path, _) in files {
        let meta = std::fs::metadata(path).map_err(|e| Error::Input {
            path: path.clone(),
            message: format!("cannot read: {e}"),
        })?;
        if meta.is_dir() {
            return Err(Error::Input {
                path: path.clone(),
                message: "is a directory; name the files to import".into(),
            });
        }
        total_bytes += meta.len();
        if format.for_path(path) == InputFormat::Csv {
            csv_columns(path)?; // fail on a bad header before anything is written
        }
    }
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} importing [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut writer = EventWriter::begin(lake, options)?;
    // ~200 bytes a line in practice; capped so a wrong guess costs at most ~400 MiB up front.
    writer.reserve_keys((total_bytes / 200).min(16 << 20) as usize);
    for (path, name) in files {
        let before = writer_stats_snapshot(&writer);
        match format.for_path(path) {
            InputFormat::Csv => import_csv(&mut writer, path, name, &progress)?,
            _ => import_ndjson(&mut writer, path, name, &progress)?,
        }
        let after = writer_stats_snapshot(&writer);
        tracing::info!(
            file = %name,
            read = after.0 - before.0,
            quarantined = after.1 - before.1,
            "file read"
        );
    }
    progress.finish_and_clear();
    writer.commit()
}

fn writer_stats_snapshot(w: &EventWriter) -> (u64, u64) {
    let s = w.stats();
    (s.read, s.quarantined)
}

/// Offer one parsed block to the writer, in input order.
/// A parsed line: its number, its text, and the event with its dedupe key or the reason it
/// was rejected.
pub(crate) type Parsed<'a> = (u64, &'a str, std::result::Result<(Event<'a>, u128), String>);

/// Validate and key one line (runs on all cores).
#[inline]
pub(crate) fn keyed(
    result: std::result::Result<Event<'_>, String>,
) -> std::result::Result<(Event<'_>, u128), String> {
    result.map(|event| {
        let key = event.key();
        (event, key)
    })
}

pub(crate) fn offer(writer: &mut EventWriter, file: &str, parsed: Vec<Parsed<'_>>) -> Result<()> {
    writer.count_read(parsed.len() as u64);
    // References, not the events: an event is ~350 bytes, moving them would cost a copy each.
    let mut valid = Vec::with_capacity(parsed.len());
    for (line, raw, result) in &parsed {
        match result {
            Ok(keyed) => valid.push(keyed),
            Err(reason) => writer.reject(file, *line, reason, raw),
        }
    }
    writer.add_all(&valid)
}

fn import_ndjson(
    writer: &mut EventWriter,
    path: &Path,
    name: &str,
    progress: &ProgressBar,
) -> Result<()> {
    let file = std::fs::File::open(path).io_context(|| format!("opening {name}"))?;
    read_blocks(file, name, progress, |block| match block {
        Block::TooLong { line, len, hash } => {
            offer(writer, name, vec![(*line, "", Err(too_long(*len, *hash)))])
        }
        Block::Lines { bytes, lines } => {
            let lines: Vec<(u64, &[u8])> = lines
                .iter()
                .map(|&(line, start, end)| (line, &bytes[start..end]))
                .collect();
            // A pipeline of two stages on the cores: while one part of the block is parsed
            // and validated (in parallel), the part before it is deduplicated and copied into
            // the partitions' columns (in input order), so the serial dedupe does not leave a
            // core idle.
            let mut pending: Option<Vec<Parsed<'_>>> = None;
            for part in lines.chunks(PIPELINE_LINES) {
                let (parsed, offered) = rayon::join(
                    || parse_ndjson_lines(part),
                    || pending.take().map_or(Ok(()), |p| offer(writer, name, p)),
                );
                offered?;
                pending = Some(parsed);
            }
            pending.map_or(Ok(()), |parsed| offer(writer, name, parsed))
        }
    })
}

/// Parse, validate and key NDJSON lines (line number, bytes), on all cores.
fn parse_ndjson_lines<'a>(lines: &[(u64, &'a [u8])]) -> Vec<Parsed<'a>> {
    lines
        .par_iter()
        .map(|&(line, raw)| {
            if raw.len() > MAX_LINE_BYTES {
                let hash = xxhash_rust::xxh3::xxh3_64(raw);
                return (line, "", Err(too_long(raw.len() as u64, hash)));
            }
            match std::str::from_utf8(raw) {
                Ok(text) => (line, text, keyed(parse_json_line(text))),
                Err(_) => (line, "", Err("line is not valid UTF-8".to_string())),
            }
        })
        .collect()
}

/// Column index in the CSV file for each SPEC §2 column (None = not in the header).
struct CsvColumns {
    index: [Option<usize>; COLUMN_COUNT],
}

/// The SPEC §2 columns in order (from the event schema) and whether input must have them: the
/// non-nullable ones, except `received_at`, which the importer fills in when absent (§4.8).
const COLUMN_COUNT: usize = 15;

fn spec_columns() -> Vec<(String, bool)> {
    let schema = crate::event::event_schema();
    let columns: Vec<(String, bool)> = schema
        .fields()
        .iter()
        .map(|f| {
            (
                f.name().clone(),
                !f.is_nullable() && f.name() != "received_at",
            )
        })
        .collect();
    assert_eq!(
        columns.len(),
        COLUMN_COUNT,
        "the CSV reader follows the event schema"
    );
    columns
}

fn csv_columns(path: &Path) -> Result<CsvColumns> {
    let err = |message: String| Error::Input {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let header = reader
        .headers()
        .map_err(|e| err(format!("cannot read the CSV header: {e}")))?;
    let columns = spec_columns();
    let mut index = [None; COLUMN_COUNT];
    for (i, name) in header.iter().enumerate() {
        let name = name.trim();
        if name == "event_date" {
            continue; // the lake's partition column; derived from occurred_at
        }
        match columns.iter().position(|(c, _)| c == name) {
            Some(c) if index[c].is_some() => {
                return Err(err(format!("column `{name}` appears twice in the header")))
            }
            Some(c) => index[c] = Some(i),
            None => {
                return Err(err(format!(
                    "unknown column `{name}` in the header (columns are: {})",
                    columns
                        .iter()
                        .map(|(c, _)| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        }
    }
    let missing: Vec<&str> = columns
        .iter()
        .zip(index)
        .filter(|((_, required), found)| *required && found.is_none())
        .map(|((name, _), _)| name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(err(format!(
            "the header lacks required column(s): {}",
            missing.join(", ")
        )));
    }
    Ok(CsvColumns { index })
}

/// Records parsed per parallel block.
const CSV_BLOCK: usize = 32 * 1024;

fn import_csv(
    writer: &mut EventWriter,
    path: &Path,
    name: &str,
    progress: &ProgressBar,
) -> Result<()> {
    let columns = csv_columns(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| Error::Input {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let width = reader.byte_headers().map(|h| h.len()).unwrap_or(0);
    let mut done = false;
    let mut last_offset = 0;
    while !done {
        // (line, record or read error)
        let mut records: Vec<(u64, std::result::Result<csv::ByteRecord, String>)> =
            Vec::with_capacity(CSV_BLOCK);
        while records.len() < CSV_BLOCK {
            let mut record = csv::ByteRecord::new();
            match reader.read_byte_record(&mut record) {
                Ok(false) => {
                    done = true;
                    break;
                }
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    if record.len() != width {
                        records.push((
                            line,
                            Err(format!("expected {width} fields, found {}", record.len())),
                        ));
                    } else {
                        records.push((line, Ok(record)));
                    }
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    records.push((line, Err(format!("invalid CSV: {e}"))));
                    if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                        return Err(Error::Input {
                            path: path.to_path_buf(),
                            message: e.to_string(),
                        });
                    }
                }
            }
        }
        let offset = reader.position().byte();
        progress.inc(offset - last_offset);
        last_offset = offset;
        let raws: Vec<String> = records.par_iter().map(|(_, r)| raw_csv_line(r)).collect();
        let parsed: Vec<_> = records
            .par_iter()
            .zip(raws.par_iter())
            .map(|((line, record), raw)| {
                let result = match record {
                    Ok(r) => keyed(csv_event(r, &columns)),
                    Err(reason) => Err(reason.clone()),
                };
                (*line, raw.as_str(), result)
            })
            .collect();
        offer(writer, name, parsed)?;
    }
    Ok(())
}

/// The record as one CSV line again, for the quarantine file.
fn raw_csv_line(record: &std::result::Result<csv::ByteRecord, String>) -> String {
    let Ok(record) = record else {
        return String::new();
    };
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b' '))
        .from_writer(Vec::new());
    if w.write_byte_record(record).is_err() {
        return String::new();
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(bytes.strip_suffix(b" ").unwrap_or(&bytes)).into_owned()
}

fn csv_event<'a>(
    record: &'a csv::ByteRecord,
    columns: &CsvColumns,
) -> std::result::Result<Event<'a>, String> {
    let mut fields: [Option<Cow<'a, str>>; COLUMN_COUNT] = Default::default();
    for (c, slot) in fields.iter_mut().enumerate() {
        if let Some(i) = columns.index[c] {
            let bytes = record.get(i).unwrap_or(b"");
            let text = std::str::from_utf8(bytes)
                .map_err(|_| format!("column {} is not valid UTF-8", c + 1))?;
            *slot = Some(Cow::Borrowed(text));
        }
    }
    let [event_id, source, community_id, member_id, event_type, occurred_at, received_at, content_id, parent_id, target_member_id, title, body, amount, currency, properties] =
        fields;
    let amount_minor = match amount.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(a) => Some(
            a.parse::<i64>()
                .map_err(|_| format!("wrong type: amount_minor `{a}` is not an integer"))?,
        ),
    };
    validate(RawFields {
        event_id,
        source,
        community_id,
        member_id,
        event_type,
        occurred_at,
        received_at,
        content_id,
        parent_id,
        target_member_id,
        title,
        body,
        amount_minor,
        currency,
        properties,
        event_date: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A line of an input file: a valid event, a damaged one, or anything.
    fn line() -> impl Strategy<Value = String> {
        let valid = r#"{"event_id":"e1","source":"app","community_id":"c1","member_id":"m1","event_type":"post","occurred_at":"2026-11-20T10:00:00Z"}"#;
        prop_oneof![
            Just(valid.to_string()),
            (any::<prop::sample::Index>(), any::<char>()).prop_map(move |(i, c)| {
                let mut chars: Vec<char> = valid.chars().collect();
                let i = i.index(chars.len());
                chars[i] = c;
                chars.into_iter().collect()
            }),
            ".{0,60}",
            "[a-z0-9,\"{}:\\-]{0,60}",
            Just("event_id,source,community_id,member_id,event_type,occurred_at".to_string()),
            Just("e1,app,c1,m1,post,2026-11-20T10:00:00Z".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 24,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Property test (bounded cases): the NDJSON and CSV readers take random and damaged
        /// files without a panic; every line is imported, quarantined or refused with the file.
        #[test]
        fn the_readers_take_random_and_damaged_files(
            lines in prop::collection::vec(line(), 0..12),
            csv in any::<bool>(),
            raw in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
            let mut bytes = lines.join("\n").into_bytes();
            bytes.extend(raw);
            let path = dir.path().join(if csv { "input.csv" } else { "input.ndjson" });
            std::fs::write(&path, bytes).unwrap();
            if let Ok(stats) = import_files(&lake, &[path], InputFormat::Auto, WriterOptions::default()) {
                prop_assert_eq!(stats.read, stats.imported + stats.duplicate + stats.quarantined + stats.forgotten);
            }
        }
    }
}
