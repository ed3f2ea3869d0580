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
//! Pickup ([`pickup`]): each `[[ingest.exports]]` folder is scanned on every run; a file whose
//! content hash is not in `<state_dir>/exports.jsonl` is imported and then recorded, so each
//! file is imported once. A file that fails stays unrecorded and is tried again next run.
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

/// Slack `ts` ("1736554636.807919") as RFC 3339.
fn slack_time(ts: &str) -> Option<String> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, "0"));
    let micros: u32 = format!("{frac:0<6}")[..6].parse().ok()?;
    chrono::DateTime::from_timestamp(secs.parse().ok()?, micros * 1000)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// The events of a Slack export zip.
pub fn slack_events(
    path: &Path,
    community: &str,
    ids: &Identities,
) -> Result<Vec<Map<String, Value>>> {
    let file = std::fs::File::open(path).io_context(|| format!("opening {}", path.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| input_error(path, format!("not a Slack export zip: {e}")))?;
    let mut bots = std::collections::HashSet::new();
    let mut days: Vec<(String, String)> = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| input_error(path, e.to_string()))?;
        let name = entry.name().to_string();
        if !name.ends_with(".json") {
            continue;
        }
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .map_err(|e| input_error(path, format!("{name}: {e}")))?;
        if name == "users.json" {
            let users: Vec<Value> = serde_json::from_str(&text)
                .map_err(|e| input_error(path, format!("{name}: {e}")))?;
            bots.extend(
                users
                    .iter()
                    .filter(|u| u["is_bot"] == true)
                    .filter_map(|u| u["id"].as_str().map(str::to_string)),
            );
        } else if let Some((channel, _day)) = name.split_once('/') {
            days.push((channel.to_string(), text));
        }
    }
    if days.is_empty() {
        return Err(input_error(
            path,
            "no <channel>/<date>.json files: is this a Slack workspace export?",
        ));
    }
    let member = |user: &str| ids.member(&format!("slack:{user}"));
    let mut events = Vec::new();
    for (channel, text) in days {
        let messages: Vec<Value> = serde_json::from_str(&text)
            .map_err(|e| input_error(path, format!("{channel}: {e}")))?;
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
                events.push(event(
                    "slack_export",
                    community,
                    format!("{id}:join"),
                    member(user),
                    "join",
                    at,
                ));
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
            events.push(e);
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
                    events.push(like);
                }
            }
        }
    }
    Ok(events)
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

/// Convert an export to a canonical NDJSON file in `dir` (for the importer); returns its path.
pub fn to_ndjson(
    path: &Path,
    format: ExportFormat,
    community: &str,
    ids: &Identities,
    dir: &Path,
) -> Result<PathBuf> {
    let events = match format {
        ExportFormat::SlackExport => slack_events(path, community, ids)?,
        ExportFormat::DiscordExport => discord_events(path, community, ids)?,
        ExportFormat::Ndjson | ExportFormat::Csv => return Ok(path.to_path_buf()),
    };
    std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    let out_path = dir.join(format!("export-{}.ndjson", crate::lake::unique_suffix()));
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&out_path)
            .io_context(|| format!("creating {}", out_path.display()))?,
    );
    for e in events {
        serde_json::to_writer(&mut out, &Value::Object(e))?;
        out.write_all(b"\n")
            .io_context(|| format!("writing {}", out_path.display()))?;
    }
    out.flush()
        .io_context(|| format!("writing {}", out_path.display()))?;
    Ok(out_path)
}

/// Import one export file into the lake; `shown` names it in logs and quarantine.
pub fn import_export(
    lake: &Lake,
    path: &Path,
    shown: &str,
    format: ExportFormat,
    community: &str,
    ids: &Identities,
    scratch: &Path,
) -> Result<crate::lake::events::ImportStats> {
    let converted = to_ndjson(path, format, community, ids, scratch)?;
    let input = match format {
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
    result
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
    pub failed: Vec<String>,
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

/// Read a regular file without following a symlink (one swapped in since the folder was
/// listed makes the open fail); returns the bytes and the look of what was read.
fn read_regular(path: &Path) -> std::io::Result<(Vec<u8>, Look)> {
    let mut options = std::fs::File::options();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let mut file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)?;
    Ok((bytes, Look::of(&file.metadata()?)))
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
    for (((index, file), ready), look) in files.iter().zip(ready).zip(&latest) {
        let export = &config.ingest.exports[*index];
        if !ready {
            tracing::info!(file = %file.display(), "export file still changing: picked up once it stays the same");
            continue;
        }
        let (bytes, read_look) = match read_regular(file) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(file = %file.display(), "export file not read: {e}");
                continue;
            }
        };
        if Some(read_look) != *look {
            tracing::info!(file = %file.display(), "export file changed while being read: picked up once it stays the same");
            continue;
        }
        let hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
        if seen.contains(&hash) {
            continue;
        }
        // The importer reads a private copy of exactly the bytes hashed, so what is recorded
        // is what was imported, whatever happens to the dropped file meanwhile.
        let copy_dir = scratch.join(format!("pickup-{}", crate::lake::unique_suffix()));
        let copy = copy_dir.join(file.file_name().unwrap_or_default());
        let result = std::fs::create_dir_all(&copy_dir)
            .and_then(|()| std::fs::write(&copy, &bytes))
            .io_context(|| format!("copying {} to {}", file.display(), copy.display()))
            .and_then(|()| {
                import_export(
                    lake,
                    &copy,
                    &file.display().to_string(),
                    export.format,
                    &export.community,
                    &ids,
                    &scratch,
                )
            });
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
                tracing::info!(file = %file.display(), imported = s.imported, duplicate = s.duplicate, quarantined = s.quarantined, "export picked up");
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
}
