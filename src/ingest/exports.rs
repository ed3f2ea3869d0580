//! Platform exports → canonical events, and the pickup of export folders.
//!
//! - `slack_export`: the workspace export zip (`channels.json`, `users.json`,
//!   `<channel>/<YYYY-MM-DD>.json`). A message is a `post`, a thread reply a `comment` whose
//!   parent is the thread's first message, each reacting user a `like` of the message
//!   (at the message's time: exports do not keep when a reaction was added), `channel_join` a
//!   `join`. Deleted messages (`tombstone`) and bots are skipped.
//! - `discord_export`: a DiscordChatExporter JSON file. `Default` messages are posts, `Reply`
//!   a comment on the message it references, reactions likes, `GuildMemberJoin` a join.
//!
//! Members are `slack:<user id>` / `discord:<user id>` (or what the identity map names). Names,
//! avatars and profiles are not copied. Event ids are stable (`<channel>:<ts>…`), so importing
//! an overlapping export again adds only what is new.
//!
//! A Slack zip is read one day file at a time (never all of them at once) and every entry's
//! decompressed size is bounded, each and in total ([`ZipLimits`]: `ingest.export_max_entry_bytes`,
//! default 256 MiB, and `ingest.export_max_total_bytes`, default 2 GiB): a zip bomb is refused
//! with an error naming the entry, before it is expanded.
//!
//! Pickup ([`pickup`]): each `[[ingest.exports]]` folder is scanned on every run; a file whose
//! content hash is not in `<state_dir>/exports.jsonl` is imported and then recorded, so each
//! file is imported once. A file that cannot be read as its format (a bad value, a damaged or
//! oversized zip, even a bug that panics on it) is reported and set aside: moved to
//! `rejected/` inside its folder with `<file>.reason.txt` beside it, so it is never retried and
//! never stops the other files or communities (put it back, fixed, to import it). A failure
//! that is not the file's fault (the lake or the state directory cannot be written) leaves the
//! file where it is, to be tried again next run.
//!
//! - A file is picked up only once it has stopped changing: its size and modification time
//!   must be the same at two looks, either the previous pickup's (kept in
//!   `<state_dir>/exports-pending.json`) and this one's, or two looks `export_settle_secs`
//!   apart within this run. Hidden files and `*.part`, `*.tmp`, `*.partial`, `*.crdownload`
//!   are never ready: writing under such a name and renaming when done is the safe way in.
//! - Symlinks in a folder are skipped with a warning, and files are opened without following
//!   one, so nothing outside the folder (`/etc/passwd`, a secrets file) is ever read.
//! - The bytes hashed are the bytes imported (from a private copy in `<state_dir>/tmp`), so
//!   the record says what went into the lake.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::adapters::{event, Identities};
use crate::config::{Config, ExportFormat};

use crate::error::{Chain, Error, IoContext, Result};
use crate::lake::Lake;
use crate::state::StateDir;

fn input_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Input {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Slack `ts` ("1736554636.807919": seconds, then up to six digits of microseconds) as
/// RFC 3339; `None` for anything else.
fn slack_time(ts: &str) -> Option<String> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || !digits(secs) || !digits(frac) {
        return None;
    }
    // ASCII digits only from here: any byte index is a character boundary.
    let micros: u32 = format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?;
    chrono::DateTime::from_timestamp(secs.parse().ok()?, micros * 1000)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// How far a Slack export zip may expand (`ingest.export_max_entry_bytes`,
/// `ingest.export_max_total_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipLimits {
    /// Largest decompressed size of one entry.
    pub entry: u64,
    /// Largest decompressed size of all the entries read, together.
    pub total: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits {
            entry: 256 << 20,
            total: 2 << 30,
        }
    }
}

impl ZipLimits {
    pub fn of(config: &crate::config::IngestConfig) -> ZipLimits {
        ZipLimits {
            entry: config.export_max_entry_bytes.0,
            total: config.export_max_total_bytes.0,
        }
    }
}

/// Read one zip entry whole, refusing it (before it is expanded further) beyond the limits;
/// `total` counts what the export has expanded to so far.
fn read_entry(
    path: &Path,
    entry: zip::read::ZipFile<'_, std::fs::File>,
    limits: ZipLimits,
    total: &mut u64,
) -> Result<Vec<u8>> {
    let name = entry.name().to_string();
    let bomb = |what: String| {
        input_error(
            path,
            format!("{name} {what}: refused as a zip bomb (ingest.export_max_entry_bytes = {}, ingest.export_max_total_bytes = {})",
                limits.entry, limits.total),
        )
    };
    if entry.size() > limits.entry {
        return Err(bomb(format!(
            "expands beyond {} bytes (it says {})",
            limits.entry,
            entry.size()
        )));
    }
    let room = limits.entry.min(limits.total.saturating_sub(*total));
    // The declared size may lie: read at most one byte more than allowed.
    let mut bytes = Vec::with_capacity(entry.size().min(room).min(64 << 20) as usize);
    entry
        .take(room.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| input_error(path, format!("{name}: {e}")))?;
    if bytes.len() as u64 > room {
        return Err(bomb(if room < limits.entry {
            format!(
                "expands beyond the {} bytes the whole export may expand to",
                limits.total
            )
        } else {
            format!("expands beyond {} bytes", limits.entry)
        }));
    }
    *total += bytes.len() as u64;
    Ok(bytes)
}

/// The events of a Slack export zip (with the default [`ZipLimits`]).
pub fn slack_events(
    path: &Path,
    community: &str,
    ids: &Identities,
) -> Result<Vec<Map<String, Value>>> {
    let mut events = Vec::new();
    for_each_slack_event(path, community, ids, ZipLimits::default(), |e| {
        events.push(e);
        Ok(())
    })?;
    Ok(events)
}

/// Hand each event of a Slack export zip to `emit`, one day file at a time.
pub fn for_each_slack_event(
    path: &Path,
    community: &str,
    ids: &Identities,
    limits: ZipLimits,
    mut emit: impl FnMut(Map<String, Value>) -> Result<()>,
) -> Result<()> {
    let file = std::fs::File::open(path).io_context(|| format!("opening {}", path.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| input_error(path, format!("not a Slack export zip: {e}")))?;
    let mut expanded = 0u64;
    let mut bots = std::collections::HashSet::new();
    match zip.by_name("users.json") {
        Err(zip::result::ZipError::FileNotFound) => {}
        Err(e) => return Err(input_error(path, format!("users.json: {e}"))),
        Ok(entry) => {
            let text = read_entry(path, entry, limits, &mut expanded)?;
            let users: Vec<Value> = serde_json::from_slice(&text)
                .map_err(|e| input_error(path, format!("users.json: {e}")))?;
            bots.extend(
                users
                    .iter()
                    .filter(|u| u["is_bot"] == true)
                    .filter_map(|u| u["id"].as_str().map(str::to_string)),
            );
        }
    }
    // (entry index, channel) of the day files, read one at a time below.
    let mut days: Vec<(usize, String)> = zip
        .file_names()
        .filter(|name| name.ends_with(".json"))
        .filter_map(|name| {
            Some((
                zip.index_for_name(name)?,
                name.split_once('/')?.0.to_string(),
            ))
        })
        .collect();
    days.sort();
    if days.is_empty() {
        return Err(input_error(
            path,
            "no <channel>/<date>.json files: is this a Slack workspace export?",
        ));
    }
    let member = |user: &str| ids.member(&format!("slack:{user}"));
    for (index, channel) in days {
        let entry = zip
            .by_index(index)
            .map_err(|e| input_error(path, e.to_string()))?;
        let text = read_entry(path, entry, limits, &mut expanded)?;
        let messages: Vec<Value> = serde_json::from_slice(&text)
            .map_err(|e| input_error(path, format!("{channel}: {e}")))?;
        drop(text);
        for m in messages {
            let (Some(user), Some(ts)) = (m["user"].as_str(), m["ts"].as_str()) else {
                continue;
            };
            let subtype = m["subtype"].as_str().unwrap_or("");
            if bots.contains(user)
                || matches!(
                    subtype,
                    "tombstone"
                        | "bot_message"
                        | "channel_leave"
                        | "channel_topic"
                        | "channel_purpose"
                )
            {
                continue;
            }
            let at = slack_time(ts)
                .ok_or_else(|| input_error(path, format!("{channel}: bad ts `{ts}`")))?;
            let id = format!("{channel}:{ts}");
            if subtype == "channel_join" {
                emit(event(
                    "slack_export",
                    community,
                    format!("{id}:join"),
                    member(user),
                    "join",
                    at,
                ))?;
                continue;
            }
            let thread = m["thread_ts"].as_str().filter(|t| *t != ts);
            let mut e = event(
                "slack_export",
                community,
                id.clone(),
                member(user),
                if thread.is_some() { "comment" } else { "post" },
                at.clone(),
            );
            e.insert("content_id".into(), id.clone().into());
            if let Some(t) = thread {
                e.insert("parent_id".into(), format!("{channel}:{t}").into());
                if let Some(p) = m["parent_user_id"].as_str() {
                    e.insert("target_member_id".into(), member(p).into());
                }
            }
            if let Some(body) = m["text"].as_str().filter(|t| !t.is_empty()) {
                e.insert("body".into(), body.into());
            }
            e.insert(
                "properties".into(),
                json!({ "channel": channel }).to_string().into(),
            );
            emit(e)?;
            for r in m["reactions"].as_array().into_iter().flatten() {
                let emoji = r["name"].as_str().unwrap_or("");
                for reactor in r["users"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if reactor == user {
                        continue;
                    }
                    let mut like = event(
                        "slack_export",
                        community,
                        format!("{id}:react:{emoji}:{reactor}"),
                        member(reactor),
                        "like",
                        at.clone(),
                    );
                    like.insert("content_id".into(), id.clone().into());
                    like.insert("target_member_id".into(), member(user).into());
                    emit(like)?;
                }
            }
        }
    }
    Ok(())
}

/// The events of a DiscordChatExporter JSON file.
pub fn discord_events(
    path: &Path,
    community: &str,
    ids: &Identities,
) -> Result<Vec<Map<String, Value>>> {
    let text =
        std::fs::read_to_string(path).io_context(|| format!("reading {}", path.display()))?;
    let export: Value =
        serde_json::from_str(&text).map_err(|e| input_error(path, format!("not JSON: {e}")))?;
    let messages = export["messages"].as_array().ok_or_else(|| {
        input_error(
            path,
            "no `messages`: is this a DiscordChatExporter JSON export?",
        )
    })?;
    let channel = export["channel"]["id"].as_str().unwrap_or("channel");
    let member = |id: &str| ids.member(&format!("discord:{id}"));
    let authors: HashMap<&str, &str> = messages
        .iter()
        .filter_map(|m| Some((m["id"].as_str()?, m["author"]["id"].as_str()?)))
        .collect();
    let mut events = Vec::new();
    for m in messages {
        let (Some(id), Some(author), Some(at)) = (
            m["id"].as_str(),
            m["author"]["id"].as_str(),
            m["timestamp"].as_str(),
        ) else {
            continue;
        };
        if m["author"]["isBot"] == true {
            continue;
        }
        let kind = m["type"].as_str().unwrap_or("Default");
        let event_id = format!("{channel}:{id}");
        match kind {
            "GuildMemberJoin" => events.push(event(
                "discord_export",
                community,
                event_id,
                member(author),
                "join",
                at.to_string(),
            )),
            "Default" | "Reply" => {
                let parent = m["reference"]["messageId"]
                    .as_str()
                    .filter(|_| kind == "Reply");
                let mut e = event(
                    "discord_export",
                    community,
                    event_id.clone(),
                    member(author),
                    if parent.is_some() { "comment" } else { "post" },
                    at.to_string(),
                );
                e.insert("content_id".into(), event_id.clone().into());
                if let Some(p) = parent {
                    e.insert("parent_id".into(), format!("{channel}:{p}").into());
                    if let Some(target) = authors.get(p) {
                        e.insert("target_member_id".into(), member(target).into());
                    }
                }
                if let Some(body) = m["content"].as_str().filter(|t| !t.is_empty()) {
                    e.insert("body".into(), body.into());
                }
                events.push(e);
                for r in m["reactions"].as_array().into_iter().flatten() {
                    let emoji = r["emoji"]["name"].as_str().unwrap_or("");
                    for user in r["users"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|u| u["id"].as_str())
                    {
                        if user == author {
                            continue;
                        }
                        let mut like = event(
                            "discord_export",
                            community,
                            format!("{event_id}:react:{emoji}:{user}"),
                            member(user),
                            "like",
                            at.to_string(),
                        );
                        like.insert("content_id".into(), event_id.clone().into());
                        like.insert("target_member_id".into(), member(author).into());
                        events.push(like);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(events)
}

/// One export file to convert: what it is and whose, and how to read it.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub format: ExportFormat,
    pub community: &'a str,
    pub ids: &'a Identities,
    pub limits: ZipLimits,
    /// The state directory whose member directory learns the display names the export
    /// carries (SPEC §8: names go there, never into the lake); none: names are not kept.
    pub names_to: Option<&'a Path>,
    /// `ExportFormat::Table`: the mapping file its rows are read through.
    pub mapping: Option<&'a Path>,
}

/// Convert an export to a canonical NDJSON file in `dir` (for the importer); returns its path.
pub fn to_ndjson(path: &Path, source: &Source, dir: &Path) -> Result<PathBuf> {
    if matches!(
        source.format,
        ExportFormat::Ndjson | ExportFormat::Csv | ExportFormat::Table
    ) {
        return Ok(path.to_path_buf());
    }
    std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    let out_path = dir.join(format!("export-{}.ndjson", crate::lake::unique_suffix()));
    let result = write_ndjson(path, source, &out_path);
    if result.is_err() {
        let _ = std::fs::remove_file(&out_path);
    }
    result.map(|()| out_path)
}

fn write_ndjson(path: &Path, source: &Source, out_path: &Path) -> Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(out_path)
            .io_context(|| format!("creating {}", out_path.display()))?,
    );
    let mut write = |e: Map<String, Value>| -> Result<()> {
        serde_json::to_writer(&mut out, &Value::Object(e))?;
        out.write_all(b"\n")
            .io_context(|| format!("writing {}", out_path.display()))
    };
    let Source {
        format,
        community,
        ids,
        limits,
        ..
    } = *source;
    match format {
        ExportFormat::SlackExport => for_each_slack_event(path, community, ids, limits, write)?,
        ExportFormat::DiscordExport => {
            for e in discord_events(path, community, ids)? {
                write(e)?;
            }
        }
        ExportFormat::Ndjson | ExportFormat::Csv | ExportFormat::Table => {
            unreachable!("not converted")
        }
    }
    out.flush()
        .io_context(|| format!("writing {}", out_path.display()))
}

/// Import one export file into the lake; `shown` names it in logs and quarantine. Converted
/// NDJSON is written to `scratch` and removed after.
pub fn import_export(
    lake: &Lake,
    path: &Path,
    shown: &str,
    source: &Source,
    scratch: &Path,
) -> Result<crate::lake::events::ImportStats> {
    if source.format == ExportFormat::Table {
        // Rows are mapped to canonical events in memory and imported as NDJSON lines are.
        let file = source
            .mapping
            .ok_or_else(|| Error::Usage("format = \"table\" needs a mapping file".into()))?;
        let mapping = super::table::Mapping::load(file)?;
        return super::table::import(
            lake,
            &[(path.to_path_buf(), shown.to_string())],
            &mapping,
            Some(source.community),
        );
    }
    let converted = convert(path, source, scratch)?;
    let input = match source.format {
        ExportFormat::Csv => crate::ingest::files::InputFormat::Csv,
        _ => crate::ingest::files::InputFormat::Ndjson,
    };
    let result = crate::ingest::files::import_named(
        lake,
        &[(converted.clone(), shown.to_string())],
        input,
        crate::lake::events::WriterOptions::default(),
    );
    if converted != path {
        let _ = std::fs::remove_file(&converted);
    }
    if let (Ok(_), Some(state_dir)) = (&result, source.names_to) {
        let names = display_names(path, source);
        if !names.is_empty() {
            let learned = crate::privacy::Directory::open(state_dir)?
                .learn(&names, &format!("{:?}", source.format).to_lowercase())?;
            tracing::info!(
                file = shown,
                names = names.len(),
                learned,
                "member directory updated"
            );
        }
    }
    result
}

/// The display names an export carries, by member id: Slack's `users.json` (display name, else
/// real name, else user name), DiscordChatExporter's authors (nickname, else name). Best
/// effort: an export without them gives none.
fn display_names(path: &Path, source: &Source) -> Vec<(String, String)> {
    let pick = |v: &Value, keys: &[&str]| -> Option<String> {
        keys.iter()
            .filter_map(|k| v.pointer(k).and_then(Value::as_str))
            .map(str::trim)
            .find(|s| !s.is_empty())
            .map(str::to_string)
    };
    match source.format {
        ExportFormat::SlackExport => {
            let Ok(file) = std::fs::File::open(path) else {
                return Vec::new();
            };
            let Ok(mut zip) = zip::ZipArchive::new(file) else {
                return Vec::new();
            };
            let mut expanded = 0;
            let Ok(entry) = zip.by_name("users.json") else {
                return Vec::new();
            };
            let Ok(text) = read_entry(path, entry, source.limits, &mut expanded) else {
                return Vec::new();
            };
            let users: Vec<Value> = serde_json::from_slice(&text).unwrap_or_default();
            users
                .iter()
                .filter(|u| u["is_bot"] != true)
                .filter_map(|u| {
                    let id = u["id"].as_str()?;
                    let name = pick(
                        u,
                        &[
                            "/profile/display_name",
                            "/real_name",
                            "/profile/real_name",
                            "/name",
                        ],
                    )?;
                    Some((source.ids.member(&format!("slack:{id}")), name))
                })
                .collect()
        }
        ExportFormat::DiscordExport => {
            let Ok(text) = std::fs::read_to_string(path) else {
                return Vec::new();
            };
            let export: Value = serde_json::from_str(&text).unwrap_or_default();
            let mut names = std::collections::BTreeMap::new();
            for m in export["messages"].as_array().into_iter().flatten() {
                let author = &m["author"];
                if author["isBot"] == true {
                    continue;
                }
                if let (Some(id), Some(name)) =
                    (author["id"].as_str(), pick(author, &["/nickname", "/name"]))
                {
                    names.insert(source.ids.member(&format!("discord:{id}")), name);
                }
            }
            names.into_iter().collect()
        }
        ExportFormat::Ndjson | ExportFormat::Csv | ExportFormat::Table => Vec::new(),
    }
}

/// [`to_ndjson`], with a panic on the file's content turned into an input error.
fn convert(path: &Path, source: &Source, scratch: &Path) -> Result<PathBuf> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        to_ndjson(path, source, scratch)
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(input_error(
            path,
            format!("cannot be read (a bug in pulse: {what})"),
        ))
    })
}

/// Move a file that cannot be imported to `<folder>/rejected/` with a `<file>.reason.txt`
/// beside it; returns where it went.
fn set_aside(folder: &Path, file: &Path, reason: &str) -> Result<PathBuf> {
    let dir = folder.join("rejected");
    std::fs::create_dir_all(&dir).io_context(|| format!("creating {}", dir.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut target = dir.join(&name);
    if target.exists() {
        target = dir.join(format!("{}-{name}", crate::lake::unique_suffix()));
    }
    std::fs::rename(file, &target)
        .io_context(|| format!("moving {} to {}", file.display(), target.display()))?;
    let note = target.with_file_name(format!(
        "{}.reason.txt",
        target.file_name().unwrap_or_default().to_string_lossy()
    ));
    let text = format!(
        "{name} was not imported ({}):\n{reason}\n\nFix it and put it back in {} to import it.\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        folder.display()
    );
    std::fs::write(&note, text).io_context(|| format!("writing {}", note.display()))?;
    Ok(target)
}

/// One line of `exports.jsonl`: a file imported by pickup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PickedUp {
    pub file: String,
    pub hash: String,
    pub imported: u64,
    pub duplicate: u64,
    pub quarantined: u64,
    pub at: String,
}

/// What a pickup did.
#[derive(Debug, Default)]
pub struct PickupStats {
    pub files: usize,
    pub imported: u64,
    /// Events of forgotten members dropped (SPEC §8).
    pub forgotten: u64,
    /// Not imported, not the file's fault: tried again next run.
    pub failed: Vec<String>,
    /// Not imported and set aside in `rejected/`.
    pub rejected: Vec<String>,
}

/// A file's size and modification time as one look saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Look {
    pub size: u64,
    /// Nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
}

impl Look {
    fn of(meta: &std::fs::Metadata) -> Look {
        let mtime_ns = meta
            .modified()
            .ok()
            .map(|t| match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_nanos() as i128,
                Err(e) => -(e.duration().as_nanos() as i128),
            })
            .unwrap_or(0);
        Look {
            size: meta.len(),
            mtime_ns,
        }
    }
}

/// `<state_dir>/exports-pending.json`: what the last pickup saw of each candidate file.
fn pending_path(state: &StateDir) -> PathBuf {
    state.root().join("exports-pending.json")
}

/// The regular files of one export folder that may be imported: not hidden, not named as
/// still being copied (`*.part`, `*.tmp`, …), and not symlinks (a link could point anywhere:
/// `/etc/passwd`, a secrets file; each is skipped with a warning).
fn candidates(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        tracing::warn!(folder = %folder.display(), "export folder does not exist (yet)");
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // Hidden files and files still being copied in are not ready.
            !name.starts_with('.')
                && ![".tmp", ".part", ".partial", ".crdownload"]
                    .iter()
                    .any(|s| name.ends_with(s))
        })
        .filter(|e| match e.file_type() {
            Ok(t) if t.is_symlink() => {
                tracing::warn!(file = %e.path().display(), "export folder entry is a symlink: skipped (copy or move files into the folder instead)");
                false
            }
            Ok(t) => t.is_file(),
            Err(_) => false,
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// A file's look, without following a symlink.
fn look(path: &Path) -> Option<Look> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_file())
        .map(|m| Look::of(&m))
}

/// Copy a regular file to `to` without following a symlink (one swapped in since the folder
/// was listed makes the open fail), in blocks; returns the xxh3-128 of the bytes copied and
/// the look of the file they came from.
fn copy_regular(path: &Path, to: &Path) -> std::io::Result<(String, Look)> {
    let mut options = std::fs::File::options();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let mut file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut out = std::fs::File::create(to)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    Ok((
        format!("{:032x}", hasher.digest128()),
        Look::of(&file.metadata()?),
    ))
}

/// Import every new file of the `[[ingest.exports]]` folders (see the module docs).
pub fn pickup(config: &Config, lake: &Lake, state: &StateDir) -> Result<PickupStats> {
    let mut stats = PickupStats::default();
    if config.ingest.exports.is_empty() {
        return Ok(stats);
    }
    let ledger = state.ledger::<PickedUp>("exports");
    let seen: std::collections::HashSet<String> =
        ledger.read()?.into_iter().map(|r| r.hash).collect();
    let ids = super::adapters::read_identities(&config.ingest)?;

    // A file is ready when two looks agree: the last pickup's and this one's, or this one's
    // and another after `export_settle_secs`.
    let pending_file = pending_path(state);
    let previous: HashMap<String, Look> = std::fs::read(&pending_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let files: Vec<(usize, PathBuf)> = config
        .ingest
        .exports
        .iter()
        .enumerate()
        .flat_map(|(i, x)| candidates(&x.path).into_iter().map(move |f| (i, f)))
        .collect();
    let key = |f: &Path| f.display().to_string();
    let first: Vec<Option<Look>> = files.iter().map(|(_, f)| look(f)).collect();
    let mut latest = first.clone();
    let mut ready: Vec<bool> = files
        .iter()
        .zip(&first)
        .map(|((_, f), l)| l.is_some() && previous.get(&key(f)) == l.as_ref())
        .collect();
    if ready.iter().any(|r| !r) && config.ingest.export_settle_secs > 0 {
        std::thread::sleep(std::time::Duration::from_secs(
            config.ingest.export_settle_secs,
        ));
        for (i, (_, f)) in files.iter().enumerate() {
            if !ready[i] {
                latest[i] = look(f);
                ready[i] = latest[i].is_some() && latest[i] == first[i];
            }
        }
    }
    let looks: HashMap<String, Look> = files
        .iter()
        .zip(&latest)
        .filter_map(|((_, f), l)| l.map(|l| (key(f), l)))
        .collect();
    std::fs::create_dir_all(state.root())
        .io_context(|| format!("creating {}", state.root().display()))?;
    crate::lake::write_atomic(&pending_file, &serde_json::to_vec(&looks)?)?;

    let scratch = state.root().join("tmp");
    let limits = ZipLimits::of(&config.ingest);
    for (((index, file), ready), look) in files.iter().zip(ready).zip(&latest) {
        let export = &config.ingest.exports[*index];
        if !ready {
            tracing::info!(file = %file.display(), "export file still changing: picked up once it stays the same");
            continue;
        }
        let copy_dir = scratch.join(format!("pickup-{}", crate::lake::unique_suffix()));
        let copy = copy_dir.join(file.file_name().unwrap_or_default());
        // The importer reads a private copy of exactly the bytes hashed, so what is recorded
        // is what was imported, whatever happens to the dropped file meanwhile.
        let (hash, read_look) = match std::fs::create_dir_all(&copy_dir)
            .and_then(|()| copy_regular(file, &copy))
        {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&copy_dir);
                tracing::warn!(file = %file.display(), "export file not read (tried again next run): {e}");
                continue;
            }
        };
        if Some(read_look) != *look || seen.contains(&hash) {
            if Some(read_look) != *look {
                tracing::info!(file = %file.display(), "export file changed while being read: picked up once it stays the same");
            }
            let _ = std::fs::remove_dir_all(&copy_dir);
            continue;
        }
        let source = Source {
            format: export.format,
            community: &export.community,
            ids: &ids,
            limits,
            names_to: Some(&config.state_dir),
            mapping: export.mapping.as_deref(),
        };
        let result = import_export(lake, &copy, &file.display().to_string(), &source, &scratch);
        let _ = std::fs::remove_dir_all(&copy_dir);
        match result {
            Ok(s) => {
                ledger.append(&PickedUp {
                    file: file.display().to_string(),
                    hash,
                    imported: s.imported,
                    duplicate: s.duplicate,
                    quarantined: s.quarantined,
                    at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                })?;
                stats.files += 1;
                stats.imported += s.imported;
                stats.forgotten += s.forgotten;
                tracing::info!(file = %file.display(), imported = s.imported, duplicate = s.duplicate, quarantined = s.quarantined, "export picked up");
            }
            // The file's content is at fault: set it aside, never to be retried as it is.
            Err(e @ Error::Input { .. }) => {
                let reason = Chain(&e).to_string();
                match set_aside(&export.path, file, &reason) {
                    Ok(to) => {
                        tracing::error!(file = %file.display(), rejected = %to.display(), "export not imported, set aside: {reason}");
                        stats.rejected.push(format!(
                            "{} (moved to {}): {reason}",
                            file.display(),
                            to.display()
                        ));
                    }
                    Err(move_error) => {
                        // It cannot be moved: record it as seen so it is not retried forever.
                        tracing::error!(file = %file.display(), "export not imported and cannot be set aside ({}): {reason}", Chain(&move_error));
                        ledger.append(&PickedUp {
                            file: file.display().to_string(),
                            hash,
                            imported: 0,
                            duplicate: 0,
                            quarantined: 0,
                            at: chrono::Utc::now()
                                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        })?;
                        stats.rejected.push(format!(
                            "{} (left in place, not retried): {reason}",
                            file.display()
                        ));
                    }
                }
            }
            Err(e) => {
                tracing::error!(file = %file.display(), "export not imported (tried again next run): {}", Chain(&e));
                stats
                    .failed
                    .push(format!("{}: {}", file.display(), Chain(&e)));
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_times_keep_microseconds() {
        assert_eq!(
            slack_time("1736554636.807919").unwrap(),
            "2025-01-11T00:17:16.807919Z"
        );
    }

    #[test]
    fn slack_ts_with_a_multibyte_character_is_an_error_not_a_panic() {
        for ts in [
            "1736554636.12345é",
            "1736554636.é",
            "é.1",
            "1736554636.８０７９１９",
            "",
        ] {
            assert_eq!(slack_time(ts), None, "{ts}");
        }
        assert_eq!(
            slack_time("1736554636").unwrap(),
            "2025-01-11T00:17:16.000000Z"
        );
        assert_eq!(
            slack_time("1736554636.8").unwrap(),
            "2025-01-11T00:17:16.800000Z"
        );
    }

    /// A zip whose one day file is `expanded` bytes of spaces (deflate: ~1000:1).
    fn bomb(dir: &Path, expanded: usize) -> PathBuf {
        let path = dir.join("bomb.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        zip.start_file("users.json", options).unwrap();
        zip.write_all(b"[]").unwrap();
        zip.start_file("general/2025-01-11.json", options).unwrap();
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..expanded >> 20 {
            zip.write_all(&chunk).unwrap();
        }
        zip.write_all(b"[]").unwrap();
        zip.finish().unwrap();
        path
    }

    #[test]
    fn a_slack_zip_bomb_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        // 300 MiB expanded, a few hundred KiB on disk: beyond the 256 MiB default per entry.
        let path = bomb(dir.path(), 300 << 20);
        assert!(std::fs::metadata(&path).unwrap().len() < 2 << 20);
        let err = slack_events(&path, "c1", &Identities::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("general/2025-01-11.json") && err.contains("expands beyond"),
            "{err}"
        );
    }

    #[test]
    fn discord_export_maps_posts_replies_reactions_and_joins() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/discordchatexporter.json"
        ));
        let events = discord_events(path, "c1", &Identities::default()).unwrap();
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e["event_type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["join", "post", "like", "like", "comment"]);
        let reply = &events[4];
        assert_eq!(reply["parent_id"], "913094340438556702:913100890968313916");
        assert_eq!(reply["target_member_id"], "discord:361704756575600660");
        let text = serde_json::to_string(&events).unwrap();
        assert!(
            !text.contains("dudewhatzup") && !text.contains("avatar"),
            "no names"
        );
        for e in &events {
            crate::event::parse_json_line(&Value::Object(e.clone()).to_string()).unwrap();
        }
    }

    #[test]
    fn damaged_exports_are_errors_not_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let dir = tempfile::tempdir().unwrap();
        let original = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/discordchatexporter.json"
        ))
        .unwrap();
        for _ in 0..500 {
            let mut bytes = original.clone();
            for _ in 0..rng.gen_range(1..6) {
                let i = rng.gen_range(0..bytes.len());
                let junk = b"{}[]\":,0a";
                bytes[i] = junk[rng.gen_range(0..junk.len())];
            }
            bytes.truncate(rng.gen_range(0..=bytes.len()));
            let file = dir.path().join("export.json");
            std::fs::write(&file, &bytes).unwrap();
            let _ = discord_events(&file, "c1", &Identities::default());
            // Not a zip: a clear error.
            assert!(slack_events(&file, "c1", &Identities::default()).is_err());
        }
    }

    /// A Slack export zip of `users.json` and one day file of `messages`.
    fn slack_zip(messages: &Value) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("users.json", options).unwrap();
        zip.write_all(br#"[{"id":"B1","is_bot":true}]"#).unwrap();
        zip.start_file("general/2025-01-11.json", options).unwrap();
        zip.write_all(messages.to_string().as_bytes()).unwrap();
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn the_total_expanded_size_is_bounded_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("two.zip");
        let messages = json!([{ "user": "U1", "ts": "1736554636.1", "text": "x".repeat(3000) }]);
        std::fs::write(&path, slack_zip(&messages)).unwrap();
        let limits = ZipLimits {
            entry: 4000,
            total: 3000,
        };
        let err = for_each_slack_event(&path, "c1", &Identities::default(), limits, |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("the whole export may expand to"), "{err}");
        let roomy = ZipLimits {
            entry: 4000,
            total: 8000,
        };
        let mut n = 0;
        for_each_slack_event(&path, "c1", &Identities::default(), roomy, |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    /// Property tests (proptest, bounded cases): random messages in a Slack day file, damaged
    /// Slack zips and random DiscordChatExporter documents are read or refused, never a panic.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<i64>().prop_map(|n| json!(n)),
                prop::sample::select(vec![
                    "1736554636.807919",
                    "1736554636",
                    "1736554636.80791é",
                    "é",
                    ".",
                    "",
                    "-1.5",
                    "99999999999999999999.1",
                    "U1",
                    "B1",
                    "Reply",
                    "Default",
                    "GuildMemberJoin",
                    "channel_join",
                    "tombstone",
                    "2026-11-23T09:00:00Z",
                ])
                .prop_map(|s| json!(s)),
                ".{0,8}".prop_map(Value::String),
            ]
        }

        fn object(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
            let leaf = text();
            leaf.prop_recursive(3, 32, 5, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                    prop::collection::vec((prop::sample::select(keys), inner), 0..7).prop_map(
                        |pairs| Value::Object(
                            pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                        )
                    ),
                ]
            })
        }

        const SLACK_KEYS: &[&str] = &[
            "user",
            "ts",
            "thread_ts",
            "subtype",
            "text",
            "parent_user_id",
            "reactions",
            "name",
            "users",
        ];
        const DISCORD_KEYS: &[&str] = &[
            "messages",
            "channel",
            "id",
            "author",
            "timestamp",
            "isBot",
            "type",
            "reference",
            "messageId",
            "content",
            "reactions",
            "emoji",
            "name",
            "users",
        ];

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 64,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn slack_day_files_of_any_messages(
                messages in prop::collection::vec(object(SLACK_KEYS), 0..6),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("export.zip");
                std::fs::write(&path, slack_zip(&Value::Array(messages))).unwrap();
                if let Ok(events) = slack_events(&path, "c1", &Identities::default()) {
                    for e in events {
                        let _ = crate::event::parse_json_line(&Value::Object(e).to_string());
                    }
                }
            }

            #[test]
            fn damaged_slack_zips(
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                cut in any::<prop::sample::Index>(),
            ) {
                let messages = json!([
                    { "user": "U1", "ts": "1736554636.807919", "text": "hi",
                      "reactions": [{ "name": "+1", "users": ["U2"] }] },
                    { "user": "U2", "ts": "1736554640.1", "thread_ts": "1736554636.807919" },
                ]);
                let mut bytes = slack_zip(&messages);
                for (i, b) in flips {
                    let i = i.index(bytes.len());
                    bytes[i] = b;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("export.zip");
                std::fs::write(&path, &bytes).unwrap();
                let limits = ZipLimits { entry: 1 << 20, total: 2 << 20 };
                let _ = for_each_slack_event(&path, "c1", &Identities::default(), limits, |_| Ok(()));
            }

            #[test]
            fn discord_documents_of_any_shape(document in object(DISCORD_KEYS)) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("export.json");
                std::fs::write(&path, document.to_string()).unwrap();
                if let Ok(events) = discord_events(&path, "c1", &Identities::default()) {
                    for e in events {
                        let _ = crate::event::parse_json_line(&Value::Object(e).to_string());
                    }
                }
            }
        }
    }
}
