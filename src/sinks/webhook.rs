//! The `webhook` sink: ranked lists as Standard Webhooks messages (signed POSTs).
//!
//! - Envelope `{type: "ranked_members.published", timestamp, data: {community_id, as_of, window,
//!   page, pages, total_members, list_id, supersedes, members}}`; a list larger than
//!   `max_body_bytes` is split into numbered pages, each its own message.
//! - `webhook-id` is derived from the list's content and the page: stable across retries and
//!   re-runs of the same list, new when the list changes (then `supersedes` names the id that
//!   was delivered before for that page).
//! - `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the
//!   base64-decoded `whsec_` secret from the environment variable `secret_env`.
//! - Only 2xx is success. 3xx fails (redirects are not followed), 410 disables the sink,
//!   other 4xx fail at once; 429, 5xx, timeouts and connection errors are retried with
//!   exponential backoff and full jitter, waiting at least what `Retry-After` asks. After the
//!   last attempt the message goes to `<state_dir>/dead_letters/` and the run exits non-zero;
//!   the next run tries again (the id is the same, so the receiver can deduplicate).
//! - Of an answer's body, at most [`MAX_ANSWER_BYTES`] are read (the first 200 characters are
//!   kept for the log): a receiver answering with a huge body costs nothing more.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;

use super::{
    ledger, DeliveryRecord, DeliveryStatus, RankedList, RankedMember, SinkOptions, SinkOutcome,
};
use crate::config::SinkConfig;
use crate::error::{Chain, Error, Result};
use crate::signature::{decode_secret, standard_sign as sign};
use crate::state::StateDir;

/// The event type of a ranked-list message.
pub const EVENT_TYPE: &str = "ranked_members.published";

#[derive(Debug, Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: Page<'a>,
}

#[derive(Debug, Serialize)]
struct Page<'a> {
    community_id: &'a str,
    as_of: String,
    window: BTreeMap<&'static str, String>,
    page: u32,
    pages: u32,
    total_members: usize,
    list_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    supersedes: Option<String>,
    members: &'a [RankedMember],
}

/// Split `members` into pages whose JSON stays under `limit` bytes with `overhead` bytes of
/// envelope. Errors if one member alone does not fit.
fn paginate(
    members: &[RankedMember],
    limit: usize,
    overhead: usize,
) -> Result<Vec<&[RankedMember]>> {
    let mut pages = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, m) in members.iter().enumerate() {
        let len = serde_json::to_vec(m)?.len() + 1;
        if overhead + len > limit {
            return Err(Error::Sink {
                sink: "webhook".into(),
                message: format!(
                    "member `{}` alone needs more than max_body_bytes = {limit}",
                    m.member_id
                ),
                source: None,
            });
        }
        if overhead + size + len > limit {
            pages.push(&members[start..i]);
            start = i;
            size = 0;
        }
        size += len;
    }
    pages.push(&members[start..]);
    Ok(pages)
}

/// The deterministic id of page `page` of `pages` of a list with `fingerprint`.
fn message_id(fingerprint: &str, page: u32, pages: u32) -> String {
    let hash = xxhash_rust::xxh3::xxh3_128(format!("{fingerprint}/{page}/{pages}").as_bytes());
    format!("msg_{hash:032x}")
}

/// How much of a receiver's answer body is read.
pub const MAX_ANSWER_BYTES: usize = 64 << 10;

/// The start of an answer's body: at most [`MAX_ANSWER_BYTES`] are downloaded, the rest is
/// dropped with the connection.
async fn answer_start(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_ANSWER_BYTES);
    String::from_utf8_lossy(&bytes).chars().take(200).collect()
}

/// What one POST answered.
enum Attempt {
    Delivered(u16),
    /// Retry after at least this long (from Retry-After, when given).
    Retry(String, Option<u16>, Option<Duration>),
    Fail(String, Option<u16>),
    Gone(String),
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    id: &str,
    body: &[u8],
) -> Attempt {
    let timestamp = chrono::Utc::now().timestamp();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", sign(secret, id, timestamp, body))
        .body(body.to_vec())
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        // Without the URL: it may hold credentials, and the sink's name says where it went.
        Err(e) if e.is_timeout() => {
            let e = e.without_url();
            return Attempt::Retry(format!("timed out: {}", Chain(&e)), None, None);
        }
        Err(e) => {
            let e = e.without_url();
            return Attempt::Retry(format!("request failed: {}", Chain(&e)), None, None);
        }
    };
    let status = response.status();
    let code = status.as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let text = answer_start(response).await;
    let answer = format!(
        "HTTP {code}{}",
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    );
    match code {
        200..=299 => Attempt::Delivered(code),
        410 => Attempt::Gone(answer),
        429 | 500..=599 => Attempt::Retry(answer, Some(code), retry_after),
        300..=399 => Attempt::Fail(
            format!("{answer} (redirects are not followed: configure the final URL)"),
            Some(code),
        ),
        _ => Attempt::Fail(answer, Some(code)),
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

/// Backoff before attempt `attempt + 1`: full jitter over `initial · 2^(attempt-1)`, capped,
/// and never shorter than what the receiver asked for.
fn backoff(initial: Duration, cap: Duration, attempt: u32, asked: Option<Duration>) -> Duration {
    let ceiling = initial.saturating_mul(1 << (attempt - 1).min(20)).min(cap);
    let jittered = ceiling.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
    jittered.max(asked.unwrap_or_default())
}

/// Deliver `list` to one webhook sink.
pub async fn deliver(
    name: &str,
    sink: &SinkConfig,
    state: &StateDir,
    list: &RankedList,
    options: SinkOptions,
) -> Result<SinkOutcome> {
    let SinkConfig::Webhook {
        url,
        secret_env,
        max_body_bytes,
        timeout_secs,
        max_attempts,
        retry_initial_ms,
        retry_max_secs,
        ..
    } = sink
    else {
        unreachable!("webhook::deliver is only called for webhook sinks")
    };
    let shown = super::redact_url(url);
    let outcome = |detail: String, ok: bool, planned: Vec<String>| SinkOutcome {
        sink: name.to_string(),
        community: list.community.clone(),
        as_of: list.as_of,
        detail,
        ok,
        planned,
    };
    let ledger = ledger(state);
    let history = ledger.read()?;
    if let Some(disabled) = history
        .iter()
        .rev()
        .find(|r| r.sink == name)
        .filter(|r| r.status == DeliveryStatus::Disabled)
    {
        return Ok(outcome(
            format!(
                "skipped: the sink was disabled on {} because the receiver answered {} (run `pulse deliveries --enable {shown}` once it is fixed)",
                disabled.at,
                disabled.error.as_deref().unwrap_or("410 Gone")
            ),
            false,
            Vec::new(),
        ));
    }
    let secret = std::env::var(secret_env)
        .map_err(|_| Error::Sink {
            sink: name.to_string(),
            message: format!("the environment variable {secret_env} (secret_env) is not set"),
            source: None,
        })
        .and_then(|s| {
            decode_secret(&s).map_err(|e| Error::Sink {
                sink: name.to_string(),
                message: format!("{secret_env} {e}"),
                source: None,
            })
        })?;

    let fingerprint = list.fingerprint();
    let window = BTreeMap::from([
        ("start", list.window.0.to_string()),
        ("end", list.window.1.to_string()),
    ]);
    let published = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let body_of = |members: &[RankedMember], page: u32, pages: u32, supersedes: Option<String>| {
        serde_json::to_vec(&Envelope {
            kind: EVENT_TYPE,
            timestamp: published.clone(),
            data: Page {
                community_id: &list.community,
                as_of: list.as_of.to_string(),
                window: window.clone(),
                page,
                pages,
                total_members: list.members.len(),
                list_id: fingerprint.clone(),
                supersedes,
                members,
            },
        })
    };
    // Envelope size without members, with room for the supersedes id and page numbers.
    let skeleton = body_of(&[], u32::MAX, u32::MAX, Some(message_id("", 0, 0)))?.len();
    let pages = paginate(&list.members, max_body_bytes.0 as usize, skeleton)?;
    let page_count = pages.len() as u32;
    let delivered = |id: &str| {
        history
            .iter()
            .any(|r| r.sink == name && r.id == id && r.status == DeliveryStatus::Delivered)
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(*timeout_secs))
        .user_agent(concat!("community-pulse/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Sink {
            sink: name.to_string(),
            message: "building the HTTP client".into(),
            source: Some(e.into()),
        })?;

    let (mut sent, mut skipped) = (0, 0);
    let mut failures = Vec::new();
    let mut planned = Vec::new();
    for (i, members) in pages.into_iter().enumerate() {
        let page = i as u32 + 1;
        let id = message_id(&fingerprint, page, page_count);
        if delivered(&id) && !options.redeliver {
            skipped += 1;
            continue;
        }
        // The last different list delivered for this community, as_of and page.
        let supersedes = history
            .iter()
            .rev()
            .find(|r| {
                r.sink == name
                    && r.community == list.community
                    && r.as_of == list.as_of
                    && r.page == page
                    && r.status == DeliveryStatus::Delivered
                    && r.id != id
            })
            .map(|r| r.id.clone());
        let body = body_of(members, page, page_count, supersedes.clone())?;
        if options.dry_run {
            planned.push(format!(
                "would POST {shown} webhook-id {id} page {page}/{page_count}: {} member(s), {} bytes{}",
                members.len(),
                body.len(),
                supersedes.as_ref().map(|s| format!(", supersedes {s}")).unwrap_or_default()
            ));
            sent += 1;
            continue;
        }
        let mut attempts = 0;
        let (status, http_status, error) = loop {
            attempts += 1;
            match post(&client, url, &secret, &id, &body).await {
                Attempt::Delivered(code) => break (DeliveryStatus::Delivered, Some(code), None),
                Attempt::Gone(answer) => break (DeliveryStatus::Disabled, Some(410), Some(answer)),
                Attempt::Fail(answer, code) => break (DeliveryStatus::Failed, code, Some(answer)),
                Attempt::Retry(answer, code, asked) => {
                    if attempts >= *max_attempts {
                        break (DeliveryStatus::Failed, code, Some(answer));
                    }
                    let wait = backoff(
                        Duration::from_millis(*retry_initial_ms),
                        Duration::from_secs(*retry_max_secs),
                        attempts,
                        asked,
                    );
                    if wait > Duration::from_secs(*retry_max_secs) {
                        break (
                            DeliveryStatus::Failed,
                            code,
                            Some(format!("{answer}; Retry-After {} s is beyond retry_max_secs = {retry_max_secs}", wait.as_secs())),
                        );
                    }
                    tracing::warn!(sink = name, webhook_id = %id, attempt = attempts, "delivery failed, retrying in {:.1} s: {answer}", wait.as_secs_f64());
                    tokio::time::sleep(wait).await;
                }
            }
        };
        ledger.append(&DeliveryRecord {
            sink: name.to_string(),
            community: list.community.clone(),
            as_of: list.as_of,
            id: id.clone(),
            page,
            pages: page_count,
            status,
            attempts,
            http_status,
            error: error.clone(),
            supersedes,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })?;
        match status {
            DeliveryStatus::Delivered => sent += 1,
            DeliveryStatus::Disabled => {
                failures.push(format!("the receiver answered {} for {id}: sink disabled (run `pulse deliveries --enable {shown}` once it is fixed)", error.unwrap_or_default()));
                break;
            }
            DeliveryStatus::Failed | DeliveryStatus::Enabled => {
                let dead = dead_letter(state, name, &id, &body, attempts, error.as_deref())?;
                failures.push(format!(
                    "{id} (page {page}/{page_count}) failed after {attempts} attempt(s): {}; payload kept in {}",
                    error.unwrap_or_default(),
                    dead.display()
                ));
            }
        }
    }
    let verb = if options.dry_run {
        "would deliver"
    } else {
        "delivered"
    };
    let mut detail = format!(
        "{verb} {sent} of {page_count} page(s), {} member(s)",
        list.members.len()
    );
    if skipped > 0 {
        detail.push_str(&format!(
            ", {skipped} page(s) already delivered (--redeliver to send again)"
        ));
    }
    for f in &failures {
        detail.push_str(&format!("; {f}"));
    }
    Ok(outcome(detail, failures.is_empty(), planned))
}

/// Keep a message that could not be delivered: `<state_dir>/dead_letters/<id>.json`.
fn dead_letter(
    state: &StateDir,
    sink: &str,
    id: &str,
    body: &[u8],
    attempts: u32,
    error: Option<&str>,
) -> Result<std::path::PathBuf> {
    let path = state.root().join("dead_letters").join(format!("{id}.json"));
    let record = serde_json::json!({
        "sink": sink,
        "webhook_id": id,
        "attempts": attempts,
        "error": error,
        "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "payload": serde_json::from_slice::<serde_json::Value>(body)?,
    });
    crate::lake::write_atomic(&path, &serde_json::to_vec_pretty(&record)?)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(rank: i64) -> RankedMember {
        RankedMember {
            rank,
            member_id: format!("m{rank:05}"),
            activity_score: 1.5,
            points: 10.0,
            tier: "active".into(),
            participation: 1,
            interaction: 2,
            contribution: 3,
            retention: 0.5,
            active_days: 4,
            display_name: None,
        }
    }

    #[test]
    fn pages_stay_under_the_limit_and_keep_every_member() {
        // Three-digit ranks: every member serializes to the same length.
        let members: Vec<RankedMember> = (100..200).map(member).collect();
        let one = serde_json::to_vec(&members[0]).unwrap().len() + 1;
        let pages = paginate(&members, 300 + 10 * one, 300).unwrap();
        assert_eq!(pages.len(), 10);
        assert!(pages.iter().all(|p| p.len() == 10));
        assert_eq!(pages.concat(), members);
        assert_eq!(paginate(&[], 1000, 300).unwrap().len(), 1);
        assert!(paginate(&members, 300 + one / 2, 300).is_err());
    }

    /// A receiver answering 500 with a 300 MB body: only the first bytes are read, the rest is
    /// never downloaded (the connection is dropped).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_huge_error_body_is_not_read_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const BODY: u64 = 300_000_000;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 64 << 10];
            let _ = socket.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: {BODY}\r\n\r\n"
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b'x'; 1 << 20];
            let mut sent = 0u64;
            while sent < BODY {
                match socket
                    .write_all(&chunk[..chunk.len().min((BODY - sent) as usize)])
                    .await
                {
                    Ok(()) => sent += chunk.len() as u64,
                    Err(_) => break,
                }
            }
            sent
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let attempt = post(&client, &url, b"key", "msg_1", b"{}").await;
        let Attempt::Retry(answer, Some(500), None) = attempt else {
            panic!("expected a retry on 500")
        };
        assert!(
            answer.starts_with("HTTP 500: xxx") && answer.len() < 1000,
            "{answer}"
        );
        let sent = tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("the receiver is not blocked")
            .unwrap();
        assert!(
            sent < 64 << 20,
            "{sent} bytes of the error body were downloaded"
        );
    }

    #[test]
    fn ids_are_stable_and_change_with_the_content() {
        assert_eq!(message_id("abc", 1, 2), message_id("abc", 1, 2));
        assert_ne!(message_id("abc", 1, 2), message_id("abd", 1, 2));
        assert_ne!(message_id("abc", 1, 2), message_id("abc", 2, 2));
        assert!(message_id("abc", 1, 1).starts_with("msg_"));
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let (initial, cap) = (Duration::from_millis(100), Duration::from_secs(10));
        for attempt in 1..6 {
            let d = backoff(initial, cap, attempt, None);
            let ceiling = initial * (1 << (attempt - 1));
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
        }
        assert!(backoff(initial, cap, 20, None) <= cap);
        assert_eq!(
            backoff(initial, cap, 1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
    }
}
