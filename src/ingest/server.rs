//! The webhook receiver of `pulse serve` (axum): canonical events and platform webhooks in,
//! durable in the spool before the answer.
//!
//! | request | answer |
//! |---|---|
//! | events durable in the spool | 200 `{"accepted": n}` (or `{"ignored": reason}`) |
//! | missing or bad token / signature | 401, nothing stored |
//! | a token of `[[ingest.tokens]]` sending for a community it does not list | 403, nothing stored |
//! | body is not JSON | 400 |
//! | body over `ingest.max_body_bytes` | 413 |
//! | well-formed events that fail validation, or `/v1/events` events whose `source` is the name of a webhook endpoint, or an event longer than 1 MiB as a JSON line | 422 with the reasons of the first 100 and `rejected_count`; none stored |
//! | spool over `ingest.spool_max_bytes`, or it cannot be written | 503 with Retry-After |
//! | the request not complete within `ingest.request_timeout_secs` | 408 |
//!
//! Connections: headers must arrive within `ingest.header_timeout_secs` (else the connection
//! is closed; idle keep-alive connections too), at most `ingest.max_connections` are served at
//! once (more wait in the listen queue), and on shutdown the listener closes, in-flight
//! requests get `ingest.shutdown_grace_secs`, and whatever is left is cut off. Signatures are
//! verified on a blocking thread (at most 16 candidates per header, the MAC computed once), so
//! a costly request never holds up `/healthz`.
//!
//! `received_at` is always the moment the server accepted the request, whatever the body says,
//! and a webhook endpoint's events always have its name as `source`: a sender can neither make
//! its copy of an event older than another's nor speak for another endpoint. Replays of an
//! event are accepted again and deduplicated on `(community_id, source, event_id)` when the
//! spool moves to the lake.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;

use super::adapters::{self, Identities, Mapped};
use super::{dingtalk, feishu, platforms, wecom};
use crate::config::{Config, SourceKind};
use crate::error::{Error, Result};
use crate::signature;
use crate::spool::{AppendError, Spool};

/// Reasons listed in a 422 (the rest are counted).
const MAX_REASONS: usize = 100;

struct AppState {
    config: Config,
    spool: Spool,
    identities: Identities,
    state_dir: crate::state::StateDir,
}

type Shared = Arc<AppState>;

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl AppState {
    fn count(&self, source: &str, outcome: &str, n: u64) {
        crate::telemetry::get().ingest(source, outcome, n);
    }

    fn observe(&self, route: &str, started: std::time::Instant) {
        crate::telemetry::get().request(route, started.elapsed().as_secs_f64());
    }

    fn reject(&self, source: &str, status: StatusCode, reason: &str) -> Response {
        let outcome = match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::BAD_REQUEST => "malformed",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            _ => "unavailable",
        };
        self.count(source, outcome, 1);
        answer(status, json!({ "error": reason }))
    }

    /// Stamp `received_at` on each event, validate it (and ask `refuse`, which gives a reason
    /// to refuse an event), and either spool them all or answer why none were stored.
    async fn accept(
        &self,
        source: &str,
        events: Vec<Incoming<'_>>,
        refuse: impl FnMut(&crate::event::Event) -> Option<String>,
    ) -> Response {
        if !self.has_room() {
            return self.spool_full(source);
        }
        self.store(source, check(events, &received_now(), refuse))
            .await
    }

    /// Whether the spool takes more now (checked before any work on a request).
    fn has_room(&self) -> bool {
        self.spool.has_room(0, self.config.ingest.spool_max_bytes.0)
    }

    /// A canonical body ([`adapters::canonical_raw`]) checked. The body senders send — NDJSON,
    /// each line one valid event that `refuse` lets through — is checked line by line as it
    /// stands, without parsing it twice; any other body is parsed as a whole and checked event
    /// by event, so its answer (400 for bad JSON, a 422's reasons) is the same as if no line
    /// had been tried.
    fn check_body(
        &self,
        source: &str,
        body: &[u8],
        mut refuse: impl FnMut(&crate::event::Event) -> Option<String>,
    ) -> std::result::Result<Checked, Box<Response>> {
        if !self.has_room() {
            return Err(Box::new(self.spool_full(source)));
        }
        let now = received_now();
        if let Some(lines) = valid_lines(body, &now, &mut refuse) {
            return Ok(Checked {
                lines,
                rejected: Vec::new(),
                rejected_count: 0,
            });
        }
        match adapters::canonical_raw(body) {
            Err(e) => Err(Box::new(self.reject(source, StatusCode::BAD_REQUEST, &e))),
            Ok(events) => {
                let events = events
                    .into_iter()
                    .map(|e| Incoming::Text(e.get()))
                    .collect();
                Ok(check(events, &now, refuse))
            }
        }
    }

    /// Spool the checked events (all of them, or none when one was refused) and answer.
    async fn store(&self, source: &str, checked: Checked) -> Response {
        let Checked {
            lines,
            rejected,
            rejected_count,
        } = checked;
        if rejected_count > 0 {
            self.count(source, "invalid", rejected_count);
            return answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "error": "events failed validation; none were stored",
                    "rejected": rejected,
                    "rejected_count": rejected_count,
                }),
            );
        }
        let n = lines.len() as u64;
        if n == 0 {
            return answer(StatusCode::OK, json!({ "accepted": 0 }));
        }
        match self
            .spool
            .append_within(lines, self.config.ingest.spool_max_bytes.0)
            .await
        {
            Ok(()) => {
                self.count(source, "accepted", n);
                answer(StatusCode::OK, json!({ "accepted": n }))
            }
            Err(AppendError::Full) => self.spool_full(source),
            Err(AppendError::Failed(e)) => {
                tracing::error!("spool write failed: {e}");
                self.count(source, "unavailable", 1);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "10"), ("content-type", "application/json")],
                    json!({ "error": "events could not be stored; retry" }).to_string(),
                )
                    .into_response()
            }
        }
    }
}

/// The `received_at` the server stamps on a request's events: now, in microseconds.
fn received_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The JSON lines of the valid events (`received_at` set to `now`) and the reasons of the
/// others.
fn check(
    events: Vec<Incoming<'_>>,
    now: &str,
    mut refuse: impl FnMut(&crate::event::Event) -> Option<String>,
) -> Checked {
    let mut checked = Checked {
        lines: Vec::with_capacity(events.len()),
        rejected: Vec::new(),
        rejected_count: 0,
    };
    for (i, event) in events.into_iter().enumerate() {
        match event.stamped(now, &mut refuse) {
            Ok(line) => checked.lines.push(line.into_bytes()),
            Err(reason) => {
                checked.rejected_count += 1;
                if checked.rejected.len() < MAX_REASONS {
                    checked
                        .rejected
                        .push(json!({ "index": i, "reason": reason }));
                }
            }
        }
    }
    checked
}

/// An event of a request on its way to the spool.
enum Incoming<'a> {
    /// A canonical event as the sender wrote it (one JSON object).
    Text(&'a str),
    /// An event an adapter built, or a canonical event an endpoint rewrote.
    Object(Map<String, Value>),
}

/// The events of a request that passed, or why some did not (then none are stored).
struct Checked {
    lines: Vec<Vec<u8>>,
    rejected: Vec<Value>,
    rejected_count: u64,
}

impl Incoming<'_> {
    /// The event as its spool line, `received_at` set to `now`, validated as the import will
    /// read it (SPEC §4.8) and not refused; or the reason it is not stored.
    ///
    /// The sender's text is kept when it can be: `received_at` is spliced in front of its
    /// fields and the line validated as it stands (no JSON tree is built: this is the hot path
    /// of batched intake). Text that already names `received_at`, spans lines (the spool is
    /// imported one event per line) or fails that validation (a duplicated key, say) is
    /// rebuilt as an object, so the decision and its reason are always the object's.
    fn stamped(
        self,
        now: &str,
        refuse: &mut impl FnMut(&crate::event::Event) -> Option<String>,
    ) -> std::result::Result<String, String> {
        let object = match self {
            Incoming::Text(raw) => {
                if let Some(line) = Incoming::spliced(raw, now) {
                    if let Ok(verdict) = verdict(&line, refuse) {
                        return verdict.map(|()| line);
                    }
                }
                serde_json::from_str(raw).map_err(|e| format!("invalid JSON: {e}"))?
            }
            Incoming::Object(object) => object,
        };
        let mut object: Map<String, Value> = object;
        // Ours, never the sender's: dedupe keeps the earliest received copy.
        object.insert("received_at".into(), now.into());
        let line = Value::Object(object).to_string();
        verdict(&line, refuse)?.map(|()| line)
    }

    /// The sender's object text `raw` with our `received_at` spliced in front of its fields,
    /// unless that could name the field twice or put a line break into a spool line.
    fn spliced(raw: &str, now: &str) -> Option<String> {
        let fields = raw.strip_prefix('{')?.trim_start();
        if raw.contains("received_at") || raw.contains(['\n', '\r']) {
            return None;
        }
        let comma = if fields.starts_with('}') { "" } else { "," };
        Some(format!("{{\"received_at\":\"{now}\"{comma}{fields}"))
    }
}

/// The spool lines of an NDJSON body when every line is one valid event `refuse` lets
/// through; `None` when any is not (or the body is empty, or a JSON array). A line that passes
/// is exactly one JSON object (the validating parse refuses trailing text), so the events are
/// the ones a parse of the whole body finds.
fn valid_lines(
    body: &[u8],
    now: &str,
    refuse: &mut impl FnMut(&crate::event::Event) -> Option<String>,
) -> Option<Vec<Vec<u8>>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut lines = Vec::new();
    for raw in text.split('\n') {
        // JSON's own whitespace only: other blanks make the body invalid JSON.
        let raw = raw.trim_matches([' ', '\t', '\r']);
        if raw.is_empty() {
            continue;
        }
        let line = Incoming::spliced(raw, now)?;
        match verdict(&line, refuse) {
            Ok(Ok(())) => lines.push(line.into_bytes()),
            _ => return None,
        }
    }
    (!lines.is_empty()).then_some(lines)
}

/// `Err` when `line` is not a valid event; `Ok(Err)` when it is but `refuse` gives a reason.
fn verdict(
    line: &str,
    refuse: &mut impl FnMut(&crate::event::Event) -> Option<String>,
) -> std::result::Result<std::result::Result<(), String>, String> {
    if line.len() > crate::ingest::files::MAX_LINE_BYTES {
        return Err(format!(
            "the event is {} bytes as a JSON line, over the limit of {}",
            line.len(),
            crate::ingest::files::MAX_LINE_BYTES
        ));
    }
    let event = crate::event::parse_json_line(line)?;
    Ok(refuse(&event).map_or(Ok(()), Err))
}

impl AppState {
    fn spool_full(&self, source: &str) -> Response {
        self.count(source, "spool_full", 1);
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "60"), ("content-type", "application/json")],
            json!({ "error": "the spool is full; compaction is catching up, retry later" })
                .to_string(),
        )
            .into_response()
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn secret(env: Option<&str>) -> Option<String> {
    env.and_then(|v| std::env::var(v).ok())
        .filter(|s| !s.is_empty())
}

/// Whom a bearer token speaks for.
enum Bearer {
    /// `ingest.token_env`: every community.
    Any,
    /// Tokens of `[[ingest.tokens]]`: their communities only.
    Communities(BTreeSet<String>),
}

/// Check the bearer token of a request against `ingest.token_env` and `[[ingest.tokens]]`
/// (each compared in constant time, all of them every time).
fn bearer(
    config: &crate::config::IngestConfig,
    headers: &HeaderMap,
) -> std::result::Result<Bearer, &'static str> {
    let any = secret(config.token_env.as_deref());
    let scoped: Vec<(String, &Vec<String>)> = config
        .tokens
        .iter()
        .filter_map(|t| secret(Some(&t.token_env)).map(|s| (s, &t.communities)))
        .collect();
    if any.is_none() && scoped.is_empty() {
        return Err("POST /v1/events is closed: set ingest.token_env (or [[ingest.tokens]]) and that variable");
    }
    let given = header(headers, "authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or("missing or wrong bearer token")?;
    let matches = |t: &str| bool::from(t.as_bytes().ct_eq(given.as_bytes()));
    let is_any = any.as_deref().is_some_and(matches);
    let mut communities = BTreeSet::new();
    let mut matched = false;
    for (token, listed) in &scoped {
        if matches(token) {
            matched = true;
            communities.extend(listed.iter().cloned());
        }
    }
    match (is_any, matched) {
        (true, _) => Ok(Bearer::Any),
        (false, true) => Ok(Bearer::Communities(communities)),
        (false, false) => Err("missing or wrong bearer token"),
    }
}

/// `POST /v1/events`: canonical events with a bearer token.
async fn events(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let started = std::time::Instant::now();
    let response = match bearer(&app.config.ingest, &headers) {
        Err(reason) => app.reject("events", StatusCode::UNAUTHORIZED, reason),
        Ok(bearer) => {
            let endpoints = &app.config.ingest.sources;
            let mut forbidden = BTreeSet::new();
            let checked = app.check_body("events", &body, |e| {
                if let Bearer::Communities(allowed) = &bearer {
                    if !allowed.contains(&*e.community_id) {
                        forbidden.insert(e.community_id.to_string());
                    }
                }
                let source = &e.source;
                endpoints.iter().any(|s| s.name == *source).then(|| {
                    format!("source `{source}` is the name of a webhook endpoint ([[ingest.sources]]); only that endpoint sends it")
                })
            });
            match checked {
                Err(answer) => *answer,
                Ok(_) if !forbidden.is_empty() => {
                    let listed: Vec<String> = forbidden.iter().map(|c| format!("`{c}`")).collect();
                    app.reject(
                        "events",
                        StatusCode::FORBIDDEN,
                        &format!(
                            "this token may not send events of community {}; none were stored",
                            listed.join(", ")
                        ),
                    )
                }
                Ok(checked) => app.store("events", checked).await,
            }
        }
    };
    app.observe("/v1/events", started);
    response
}

/// `POST /v1/webhooks/<source>`: a configured platform source.
async fn webhook(
    State(app): State<Shared>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let query = query_params(raw.as_deref());
    let response = handle_webhook(&app, &name, headers, query, body).await;
    app.observe("/v1/webhooks", started);
    response
}

/// Check a webhook's signature (CPU work proportional to the body: run it on a blocking thread).
fn verify(
    kind: SourceKind,
    key: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> std::result::Result<(), &'static str> {
    match kind {
        SourceKind::Discourse => header(headers, "x-discourse-event-signature")
            .ok_or("missing X-Discourse-Event-Signature")
            .and_then(|h| signature::discourse_verify(key.as_bytes(), h, body)),
        SourceKind::Stripe => header(headers, "stripe-signature")
            .ok_or("missing Stripe-Signature")
            .and_then(|h| signature::stripe_verify(key.as_bytes(), h, body, now)),
        SourceKind::Slack | SourceKind::Wecom | SourceKind::Feishu | SourceKind::Dingtalk => {
            Err("verified with the platform's scheme")
        }
        SourceKind::Generic | SourceKind::StandardWebhooks => {
            match (
                signature::decode_secret(key),
                header(headers, "webhook-id"),
                header(headers, "webhook-timestamp"),
                header(headers, "webhook-signature"),
            ) {
                (Ok(k), Some(id), Some(ts), Some(sig)) => {
                    signature::standard_verify(&k, id, ts, sig, body, now)
                }
                (Err(_), ..) => Err("the source's secret is not a whsec_ secret"),
                _ => Err("missing webhook-id, webhook-timestamp or webhook-signature"),
            }
        }
    }
}

/// The query parameters of a request, decoded (the first of each name).
fn query_params(raw: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// The secrets of a WeCom source, from their variables.
fn wecom_keys(source: &crate::config::SourceConfig) -> std::result::Result<wecom::Secrets, String> {
    let token = secret(source.token_env.as_deref())
        .ok_or("the source's token_env variable is not set on the server")?;
    let key = secret(source.aes_key_env.as_deref())
        .ok_or("the source's aes_key_env variable is not set on the server")?;
    let key = wecom::aes_key(&key).map_err(|e| format!("the source's aes_key_env variable {e}"))?;
    let receive_id = source
        .receive_id
        .clone()
        .ok_or("the source has no receive_id")?;
    Ok(wecom::Secrets {
        token,
        key,
        receive_id,
    })
}

/// The answer to an accepted DingTalk subscription callback: `success`, encrypted and signed.
fn dingtalk_success(source: &crate::config::SourceConfig) -> Response {
    let Ok(secrets) = wecom_keys(source) else {
        // The keys were read a moment ago to open the callback.
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": "the source's keys are no longer set" }),
        );
    };
    let random: [u8; 16] = rand::random();
    let nonce: String = random[..8].iter().map(|b| format!("{b:02x}")).collect();
    answer(
        StatusCode::OK,
        dingtalk::success(
            &secrets.keys(),
            chrono::Utc::now().timestamp_millis(),
            &nonce,
            &random,
        ),
    )
}

/// `GET /v1/webhooks/<source>`: WeCom's URL verification (verify `msg_signature`, decrypt
/// `echostr`, answer its plaintext).
async fn webhook_get(
    State(app): State<Shared>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let started = std::time::Instant::now();
    let response = (|| {
        let Some(source) = app.config.ingest.sources.iter().find(|s| s.name == name) else {
            return answer(
                StatusCode::NOT_FOUND,
                json!({ "error": format!("no source `{name}` in [[ingest.sources]]") }),
            );
        };
        if source.kind != SourceKind::Wecom {
            return answer(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({ "error": "this source takes POST only" }),
            );
        }
        let secrets = match wecom_keys(source) {
            Ok(k) => k,
            Err(e) => return app.reject(&name, StatusCode::UNAUTHORIZED, &e),
        };
        let q = query_params(raw.as_deref());
        let (Some(sig), Some(ts), Some(nonce), Some(echostr)) = (
            q.get("msg_signature"),
            q.get("timestamp"),
            q.get("nonce"),
            q.get("echostr"),
        ) else {
            return app.reject(
                &name,
                StatusCode::UNAUTHORIZED,
                "missing msg_signature, timestamp, nonce or echostr",
            );
        };
        let query = wecom::Query {
            msg_signature: sig,
            timestamp: ts,
            nonce,
        };
        match wecom::echo(&secrets.keys(), query, echostr) {
            Ok(plain) => (
                StatusCode::OK,
                [("content-type", "text/plain; charset=utf-8")],
                plain,
            )
                .into_response(),
            Err(wecom::Refusal::Unauthorized(r)) => app.reject(&name, StatusCode::UNAUTHORIZED, &r),
            Err(wecom::Refusal::Malformed(r)) => app.reject(&name, StatusCode::BAD_REQUEST, &r),
        }
    })();
    app.observe("/v1/webhooks", started);
    response
}

/// What a platform's verification and decryption on a blocking thread gave: its value, or the
/// answer refusing the request (401 not from the platform, 400 not readable). The answer is
/// returned as is, at once, like `platform_delivery`'s: boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn opened<T>(
    app: &AppState,
    source: &str,
    work: std::result::Result<std::result::Result<T, wecom::Refusal>, tokio::task::JoinError>,
) -> std::result::Result<T, Response> {
    match work {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(wecom::Refusal::Unauthorized(r))) => {
            Err(app.reject(source, StatusCode::UNAUTHORIZED, &r))
        }
        Ok(Err(wecom::Refusal::Malformed(r))) => {
            Err(app.reject(source, StatusCode::BAD_REQUEST, &r))
        }
        Err(e) => {
            tracing::error!("decryption task failed: {e}");
            Err(app.reject(
                source,
                StatusCode::UNAUTHORIZED,
                "the signature could not be verified",
            ))
        }
    }
}

/// A platform delivery (Slack, WeCom, Feishu, DingTalk): verified (on a blocking thread),
/// decrypted, mapped; or the answer that ends the request (a refusal, or a URL-verification
/// challenge).
async fn platform_delivery(
    app: &AppState,
    source: &crate::config::SourceConfig,
    headers: &HeaderMap,
    query: BTreeMap<String, String>,
    body: Bytes,
) -> std::result::Result<std::result::Result<Mapped, String>, Response> {
    let name = source.name.clone();
    let community = source.community.clone();
    let ids = app.identities.clone();
    let now = chrono::Utc::now().timestamp();
    let refused = |status: StatusCode, reason: &str| app.reject(&source.name, status, reason);
    match source.kind {
        SourceKind::Slack => {
            let Some(key) = secret(source.secret_env.as_deref()) else {
                return Err(refused(
                    StatusCode::UNAUTHORIZED,
                    "the source's secret_env variable is not set on the server",
                ));
            };
            let (Some(ts), Some(sig)) = (
                header(headers, "x-slack-request-timestamp").map(str::to_string),
                header(headers, "x-slack-signature").map(str::to_string),
            ) else {
                return Err(refused(
                    StatusCode::UNAUTHORIZED,
                    "missing X-Slack-Request-Timestamp or X-Slack-Signature",
                ));
            };
            let work = tokio::task::spawn_blocking(move || {
                signature::slack_verify(key.as_bytes(), &ts, &sig, &body, now)
                    .map_err(|r| (StatusCode::UNAUTHORIZED, r.to_string()))?;
                let payload: Value = serde_json::from_slice(&body)
                    .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?;
                Ok(platforms::slack(&name, &community, &payload, &ids))
            })
            .await;
            match work {
                Ok(Ok(Ok(platforms::SlackRequest::Challenge(c)))) => {
                    app.count(&source.name, "challenge", 1);
                    Err(answer(StatusCode::OK, json!({ "challenge": c })))
                }
                Ok(Ok(Ok(platforms::SlackRequest::Mapped(m)))) => Ok(Ok(m)),
                Ok(Ok(Err(reason))) => Ok(Err(reason)),
                Ok(Err((status, reason))) => Err(refused(status, &reason)),
                Err(e) => {
                    tracing::error!("signature verification task failed: {e}");
                    Err(refused(
                        StatusCode::UNAUTHORIZED,
                        "the signature could not be verified",
                    ))
                }
            }
        }
        SourceKind::Wecom => {
            let secrets = match wecom_keys(source) {
                Ok(k) => k,
                Err(e) => return Err(refused(StatusCode::UNAUTHORIZED, &e)),
            };
            let (Some(sig), Some(ts), Some(nonce)) = (
                query.get("msg_signature"),
                query.get("timestamp"),
                query.get("nonce"),
            ) else {
                return Err(refused(
                    StatusCode::UNAUTHORIZED,
                    "missing msg_signature, timestamp or nonce in the query",
                ));
            };
            let signed = wecom::Query {
                msg_signature: sig,
                timestamp: ts,
                nonce,
            }
            .to_owned();
            let work = tokio::task::spawn_blocking(move || {
                wecom::open(&secrets.keys(), signed.query(), &body)
                    .map(|xml| wecom::map(&name, &community, &xml, &ids))
            })
            .await;
            opened(app, &source.name, work)
        }
        SourceKind::Feishu => {
            let (Some(token), Some(encrypt_key)) = (
                secret(source.verification_token_env.as_deref()),
                secret(source.encrypt_key_env.as_deref()),
            ) else {
                return Err(refused(
                    StatusCode::UNAUTHORIZED,
                    "the source's verification_token_env or encrypt_key_env variable is not set on the server",
                ));
            };
            let owned = |name: &str| header(headers, name).map(str::to_string);
            let (ts, nonce, sig) = (
                owned("x-lark-request-timestamp"),
                owned("x-lark-request-nonce"),
                owned("x-lark-signature"),
            );
            let work = tokio::task::spawn_blocking(move || {
                let keys = feishu::Keys {
                    verification_token: &token,
                    encrypt_key: &encrypt_key,
                };
                let signed = feishu::Signed {
                    timestamp: ts.as_deref(),
                    nonce: nonce.as_deref(),
                    signature: sig.as_deref(),
                };
                feishu::open(&keys, signed, &body).map(|request| match request {
                    feishu::Request::Challenge(c) => Err(c),
                    feishu::Request::Event(payload) => {
                        Ok(feishu::map(&name, &community, &payload, &ids))
                    }
                })
            })
            .await;
            match opened(app, &source.name, work)? {
                Ok(mapped) => Ok(mapped),
                Err(challenge) => {
                    app.count(&source.name, "challenge", 1);
                    Err(answer(StatusCode::OK, json!({ "challenge": challenge })))
                }
            }
        }
        SourceKind::Dingtalk if dingtalk::is_subscription(&query) => {
            if source.token_env.is_none() {
                return Err(refused(
                    StatusCode::UNAUTHORIZED,
                    "this DingTalk source takes robot callbacks only: event subscriptions need token_env, aes_key_env and receive_id",
                ));
            }
            let secrets = match wecom_keys(source) {
                Ok(k) => k,
                Err(e) => return Err(refused(StatusCode::UNAUTHORIZED, &e)),
            };
            let Some(q) = dingtalk::subscription_query(&query) else {
                return Err(refused(
                    StatusCode::UNAUTHORIZED,
                    "missing signature, timestamp or nonce in the query",
                ));
            };
            let signed = q.to_owned();
            let work = tokio::task::spawn_blocking(move || {
                dingtalk::open(&secrets.keys(), signed.query(), &body)
                    .map(|payload| dingtalk::map(&name, &community, &payload, &ids))
            })
            .await;
            opened(app, &source.name, work)
        }
        SourceKind::Dingtalk => {
            let Some(key) = secret(source.secret_env.as_deref()) else {
                let reason = if source.secret_env.is_none() {
                    "this DingTalk source takes event subscriptions only (signature, timestamp and nonce in the query): robot callbacks need secret_env"
                } else {
                    "the source's secret_env variable is not set on the server"
                };
                return Err(refused(StatusCode::UNAUTHORIZED, reason));
            };
            let (Some(ts), Some(sign)) = (header(headers, "timestamp"), header(headers, "sign"))
            else {
                return Err(refused(
                    StatusCode::UNAUTHORIZED,
                    "missing timestamp or sign header",
                ));
            };
            let now_ms = chrono::Utc::now().timestamp_millis();
            if let Err(reason) = signature::dingtalk_verify(&key, ts, sign, now_ms) {
                return Err(refused(StatusCode::UNAUTHORIZED, reason));
            }
            let payload: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return Err(refused(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid JSON: {e}"),
                    ))
                }
            };
            let mapped = dingtalk::robot(&name, &community, &payload, &ids);
            if mapped.is_ok() {
                learn_names(app, &name, dingtalk::robot_names(&name, &payload, &ids)).await;
            }
            Ok(mapped)
        }
        _ => Err(refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "not a platform source",
        )),
    }
}

async fn handle_webhook(
    app: &AppState,
    name: &str,
    headers: HeaderMap,
    query: BTreeMap<String, String>,
    body: Bytes,
) -> Response {
    let Some(source) = app.config.ingest.sources.iter().find(|s| s.name == name) else {
        return answer(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no source `{name}` in [[ingest.sources]]") }),
        );
    };
    if matches!(
        source.kind,
        SourceKind::Slack | SourceKind::Wecom | SourceKind::Feishu | SourceKind::Dingtalk
    ) {
        let subscription = dingtalk::is_subscription(&query);
        let mapped = match platform_delivery(app, source, &headers, query, body).await {
            Ok(mapped) => mapped,
            Err(response) => return response,
        };
        let response = finish(app, name, mapped).await;
        if response.status() == StatusCode::OK {
            match source.kind {
                // WeCom reads a non-empty answer as a passive reply: success is an empty body.
                SourceKind::Wecom => return (StatusCode::OK, "").into_response(),
                // DingTalk retries until it reads the encrypted word `success`.
                SourceKind::Dingtalk if subscription => return dingtalk_success(source),
                _ => {}
            }
        }
        return response;
    }
    let Some(key) = secret(source.secret_env.as_deref()) else {
        return app.reject(
            name,
            StatusCode::UNAUTHORIZED,
            "the source's secret_env variable is not set on the server",
        );
    };
    let now = chrono::Utc::now().timestamp();
    let kind = source.kind;
    let (headers, body) = match tokio::task::spawn_blocking(move || {
        verify(kind, &key, &headers, &body, now).map(|()| (headers, body))
    })
    .await
    {
        Ok(Ok(verified)) => verified,
        Ok(Err(reason)) => return app.reject(name, StatusCode::UNAUTHORIZED, reason),
        Err(e) => {
            tracing::error!("signature verification task failed: {e}");
            return app.reject(
                name,
                StatusCode::UNAUTHORIZED,
                "the signature could not be verified",
            );
        }
    };
    let (headers, body) = (&headers, &body[..]);
    let mapped = match source.kind {
        SourceKind::Generic | SourceKind::StandardWebhooks => match adapters::canonical(body) {
            Err(e) => return app.reject(name, StatusCode::BAD_REQUEST, &e),
            Ok(mut events) => {
                for e in &mut events {
                    // The endpoint's name, whatever the payload says.
                    e.insert("source".into(), name.into());
                    let community = e
                        .entry("community_id")
                        .or_insert_with(|| source.community.clone().into());
                    if community.as_str() != Some(source.community.as_str()) {
                        return app.reject(
                            name,
                            StatusCode::UNPROCESSABLE_ENTITY,
                            &format!(
                                "source `{name}` accepts events of community `{}` only",
                                source.community
                            ),
                        );
                    }
                }
                Ok(Mapped::Events(events))
            }
        },
        SourceKind::Slack | SourceKind::Wecom | SourceKind::Feishu | SourceKind::Dingtalk => {
            unreachable!("answered above")
        }
        SourceKind::Discourse | SourceKind::Stripe => {
            let payload: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return app.reject(name, StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}"))
                }
            };
            if source.kind == SourceKind::Discourse {
                let event = header(headers, "x-discourse-event").unwrap_or("");
                let mapped =
                    adapters::discourse(name, &source.community, event, &payload, &app.identities);
                if mapped.is_ok() {
                    let names = adapters::discourse_names(name, &payload, &app.identities);
                    learn_names(app, name, names).await;
                }
                mapped
            } else {
                adapters::stripe(name, &source.community, &payload, &app.identities)
            }
        }
    };
    finish(app, name, mapped).await
}

/// Display names a payload carried go to the member directory (SPEC §8), never to the lake. A
/// directory that cannot be written costs a warning, not the delivery.
async fn learn_names(app: &AppState, source: &str, names: Vec<(String, String)>) {
    if names.is_empty() {
        return;
    }
    let dir = app.state_dir.root().to_path_buf();
    let source = source.to_string();
    let learned = tokio::task::spawn_blocking(move || {
        crate::privacy::Directory::open(&dir)?.learn(&names, &source)
    })
    .await;
    match learned {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("member directory not updated: {}", crate::error::Chain(&e)),
        Err(e) => tracing::warn!("member directory not updated: {e}"),
    }
}

/// Answer a mapped delivery: refused (422), ignored (200) or spooled.
async fn finish(
    app: &AppState,
    name: &str,
    mapped: std::result::Result<Mapped, String>,
) -> Response {
    match mapped {
        Err(reason) => app.reject(name, StatusCode::UNPROCESSABLE_ENTITY, &reason),
        Ok(Mapped::Ignored(reason)) => {
            app.count(name, "ignored", 1);
            answer(StatusCode::OK, json!({ "ignored": reason }))
        }
        Ok(Mapped::Events(events)) => {
            let events = events.into_iter().map(Incoming::Object).collect();
            app.accept(name, events, |_| None).await
        }
    }
}

async fn metrics(State(app): State<Shared>) -> Response {
    // Another process (`pulse run`) may have compacted sealed segments.
    app.spool.recount();
    let spool_bytes = app.spool.bytes();
    // Runs of other processes (`pulse run`, `pulse backfill`) count for the last success too.
    let runs = crate::pipeline::history::history(&app.state_dir)
        .read()
        .map(crate::pipeline::history::latest_runs)
        .unwrap_or_else(|e| {
            tracing::warn!(
                "/metrics: the run history could not be read: {}",
                crate::error::Chain(&e)
            );
            Vec::new()
        });
    (
        StatusCode::OK,
        [("content-type", crate::telemetry::CONTENT_TYPE)],
        crate::telemetry::get().encode(spool_bytes, &runs),
    )
        .into_response()
}

/// Bind `ingest.listen`.
pub async fn bind(config: &Config) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(config.ingest.listen)
        .await
        .map_err(|e| Error::Io {
            context: format!("listening on {} (ingest.listen)", config.ingest.listen),
            source: e,
        })
}

/// Serve the receiver on `listener` until `shutdown` resolves (see the module docs for the
/// timeouts, the connection limit and the shutdown deadline).
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: &Config,
    spool: Spool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    use std::time::Duration;
    let identities = adapters::read_identities(&config.ingest)?;
    let state = Arc::new(AppState {
        config: config.clone(),
        spool,
        identities,
        state_dir: crate::state::StateDir::new(&config.state_dir),
    });
    let ingest = &config.ingest;
    let app = Router::new()
        .route("/v1/events", post(events))
        .route("/v1/webhooks/{name}", post(webhook).get(webhook_get))
        .route(
            "/healthz",
            get(|| async { answer(StatusCode::OK, json!({ "ok": true })) }),
        )
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(ingest.max_body_bytes.0 as usize))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(ingest.request_timeout_secs),
        ))
        .with_state(state);
    let local = listener.local_addr().map_err(|e| Error::Io {
        context: "reading the listen address".into(),
        source: e,
    })?;
    tracing::info!(listen = %local, "webhook receiver listening");

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(ingest.header_timeout_secs));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(ingest.max_connections as usize));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        // A free slot first: beyond max_connections, clients wait in the listen queue.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection =
            graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    let grace = Duration::from_secs(ingest.shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "in-flight requests still running after shutdown_grace_secs = {}: cut off",
            ingest.shutdown_grace_secs
        );
    }
    connections.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-30T10:00:00.000000Z";
    const EVENT: &str = r#"{"event_id":"e1","source":"app","community_id":"c1","member_id":"m1","event_type":"post","occurred_at":"2026-11-30T09:00:00Z"}"#;

    fn stamp(raw: &str) -> std::result::Result<String, String> {
        Incoming::Text(raw).stamped(NOW, &mut |_| None)
    }

    fn fields(line: &str) -> Map<String, Value> {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn the_senders_text_is_kept_with_our_received_at_in_front() {
        let line = stamp(EVENT).unwrap();
        assert_eq!(line, format!("{{\"received_at\":\"{NOW}\",{}", &EVENT[1..]));
        let event = crate::event::parse_json_line(&line).unwrap();
        assert_eq!(event.received_at, Some(1_796_032_800_000_000));
    }

    #[test]
    fn a_claimed_received_at_is_overwritten_whatever_its_spelling() {
        for claimed in [
            r#""received_at":"2001-01-01T00:00:00Z","#,
            r#""received_at":null,"#,
            // The same key once decoded: spliced text would name it twice.
            r#""received\u005fat":"2001-01-01T00:00:00Z","#,
        ] {
            let raw = EVENT.replacen('{', &format!("{{{claimed}"), 1);
            let line = stamp(&raw).unwrap();
            assert_eq!(fields(&line)["received_at"], NOW, "{raw}");
            assert_eq!(line.matches("received").count(), 1, "{line}");
        }
    }

    #[test]
    fn an_event_over_several_lines_becomes_one_line() {
        let raw = EVENT.replace(',', ",\n  ");
        let line = stamp(&raw).unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(fields(&line)["event_id"], "e1");
        assert_eq!(fields(&line)["received_at"], NOW);
    }

    #[test]
    fn a_duplicated_key_means_what_a_json_object_means_the_last_one() {
        let raw = EVENT.replacen('{', r#"{"member_id":"first","#, 1);
        let line = stamp(&raw).unwrap();
        assert_eq!(fields(&line)["member_id"], "m1");
    }

    #[test]
    fn invalid_and_refused_events_get_their_reasons() {
        let missing = stamp("{ }").unwrap_err();
        assert!(missing.contains("event_id"), "{missing}");
        let bad_type = stamp(&EVENT.replace("\"post\"", "\"dance\"")).unwrap_err();
        assert!(bad_type.contains("dance"), "{bad_type}");
        let mut seen = Vec::new();
        let refused = Incoming::Text(EVENT).stamped(NOW, &mut |e| {
            seen.push(e.community_id.to_string());
            Some(format!("not {}", e.source))
        });
        assert_eq!(refused, Err("not app".to_string()));
        assert_eq!(seen, ["c1"], "asked once");
    }

    #[test]
    fn a_body_of_valid_lines_is_checked_line_by_line_and_any_other_body_as_a_whole() {
        let other = EVENT.replace("e1", "e2");
        let ndjson = format!("{EVENT}\r\n\n  {other}\n");
        let lines = valid_lines(ndjson.as_bytes(), NOW, &mut |_| None).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(String::from_utf8_lossy(&lines[1]).contains("\"e2\""));
        // Two objects on a line, an array, a bad line, a refused event, an empty body: the
        // whole-body path decides.
        for body in [
            format!("{EVENT} {other}"),
            format!("[{EVENT}]"),
            format!("{EVENT}\n{{nope\n"),
            "\n".to_string(),
        ] {
            assert!(
                valid_lines(body.as_bytes(), NOW, &mut |_| None).is_none(),
                "{body}"
            );
        }
        assert!(valid_lines(EVENT.as_bytes(), NOW, &mut |_| Some("no".into())).is_none());
        assert_eq!(
            adapters::canonical_raw(format!("{EVENT} {other}").as_bytes())
                .unwrap()
                .len(),
            2
        );
    }
}
