//! Emailing reports, once: a queue in `state_dir`, a ledger of what was sent, and two
//! transports (`file`: an `.eml` per recipient in `<state_dir>/outbox`; `smtp`: lettre).
//!
//! A report for a recipient is first *queued* (`<state_dir>/mail/queue/`: the formatted
//! message and its envelope), then the queue is *flushed*. The ledger (`emails.jsonl`) records
//! each step, so:
//! - re-running an as_of does not queue a message that was already sent (unless `--resend`);
//! - a transient failure (refused connection, timeout, 4xx answer) is retried with backoff up
//!   to `email.max_attempts` times, and a message still unsent stays queued, so the next run
//!   tries again, whatever as_of it is for;
//! - a permanent rejection (5xx) moves the message to `<state_dir>/mail/rejected/` and names the
//!   recipient and the server's answer.
//!
//! The one window for a duplicate is a crash after the server accepted a message and before
//! the ledger line was written; the Message-ID is stable across retries, so mail clients that
//! deduplicate on it show one message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::gather::ReportData;
use super::render::Rendered;
use crate::config::{EmailConfig, EmailTransport, SmtpTls};
use crate::error::{Error, IoContext, Result};
use crate::state::StateDir;

/// One line of `emails.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailRecord {
    pub community: String,
    #[serde(with = "crate::state::iso_date")]
    pub as_of: NaiveDate,
    pub recipient: String,
    pub message_id: String,
    pub status: EmailStatus,
    /// Attempts made in this step (0 when queued).
    pub attempts: u32,
    pub error: Option<String>,
    /// When this record was written (RFC 3339, UTC).
    pub at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailStatus {
    Queued,
    Sent,
    /// A transient failure after every attempt of a run: still queued.
    Failed,
    /// A permanent rejection: taken out of the queue.
    Rejected,
}

/// The queued message's envelope and identity (the `.json` beside each queued `.eml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Queued {
    community: String,
    #[serde(with = "crate::state::iso_date")]
    as_of: NaiveDate,
    recipient: String,
    from: String,
    message_id: String,
}

/// What a flush of the queue did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushStats {
    pub sent: usize,
    /// Transient failures: still queued for the next run.
    pub failed: Vec<String>,
    /// Permanent rejections: `recipient: server answer`.
    pub rejected: Vec<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn ledger(state: &StateDir) -> crate::state::Ledger<EmailRecord> {
    state.ledger("emails")
}

fn queue_dir(state: &StateDir) -> PathBuf {
    state.root().join("mail").join("queue")
}

/// A file name for one (community, as_of, recipient): readable, and unique per recipient.
fn message_key(community: &str, as_of: NaiveDate, recipient: &str) -> String {
    let readable: String = recipient
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let hash = xxhash_rust::xxh3::xxh3_64(recipient.as_bytes());
    format!("{community}.{as_of}.{readable}.{hash:016x}")
}

/// The latest ledger status per (community, as_of, recipient), and how many times each was queued.
fn latest(records: &[EmailRecord]) -> BTreeMap<(String, NaiveDate, String), (EmailStatus, usize)> {
    let mut map: BTreeMap<_, (EmailStatus, usize)> = BTreeMap::new();
    for r in records {
        let entry = map
            .entry((r.community.clone(), r.as_of, r.recipient.clone()))
            .or_insert((r.status, 0));
        entry.0 = r.status;
        if r.status == EmailStatus::Queued {
            entry.1 += 1;
        }
    }
    map
}

/// Build the MIME message: multipart/alternative of the text and a multipart/related of the
/// HTML and its charts as inline parts (referenced by `cid:`).
fn build_message(
    from: &Mailbox,
    to: &Mailbox,
    message_id: &str,
    data: &ReportData,
    report: &Rendered,
) -> Result<Message> {
    let mut related = MultiPart::related().singlepart(SinglePart::html(report.html_email.clone()));
    for chart in &report.charts {
        related = related.singlepart(Attachment::new_inline(chart.content_id(data)).body(
            chart.png.clone(),
            ContentType::parse("image/png").expect("mime type"),
        ));
    }
    Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(report.subject.clone())
        .message_id(Some(message_id.to_string()))
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(report.text.clone()))
                .multipart(related),
        )
        .map_err(|e| Error::Email {
            context: format!("building the message for {to}"),
            source: e.into(),
        })
}

/// Queue the report for every recipient that has not been sent it yet (every recipient when
/// `resend`). Returns how many were queued and how many were already sent.
pub fn enqueue(
    state: &StateDir,
    from: &str,
    recipients: &[String],
    data: &ReportData,
    report: &Rendered,
    resend: bool,
) -> Result<(usize, usize)> {
    let from: Mailbox = from
        .parse()
        .map_err(|e: lettre::address::AddressError| Error::Email {
            context: format!("report.from `{from}`"),
            source: e.into(),
        })?;
    let ledger = ledger(state);
    let status = latest(&ledger.read()?);
    let dir = queue_dir(state);
    let (mut queued, mut already) = (0, 0);
    for recipient in recipients {
        let key = (data.community_id.clone(), data.as_of, recipient.clone());
        let (last, generation) = status
            .get(&key)
            .copied()
            .unwrap_or((EmailStatus::Queued, 0));
        let file_key = message_key(&data.community_id, data.as_of, recipient);
        let pending = dir.join(format!("{file_key}.json")).exists();
        // Sent (or permanently rejected) before, or waiting in the queue: nothing to add.
        let done = generation > 0 && matches!(last, EmailStatus::Sent | EmailStatus::Rejected);
        if !resend && (done || pending) {
            already += 1;
            continue;
        }
        let to: Mailbox = recipient
            .parse()
            .map_err(|e: lettre::address::AddressError| Error::Email {
                context: format!("recipient `{recipient}`"),
                source: e.into(),
            })?;
        let message_id = format!("<{file_key}.{generation}@{}>", from.email.domain());
        let message = build_message(&from, &to, &message_id, data, report)?;
        crate::lake::write_atomic(&dir.join(format!("{file_key}.eml")), &message.formatted())?;
        let envelope = Queued {
            community: data.community_id.clone(),
            as_of: data.as_of,
            recipient: recipient.clone(),
            from: from.email.to_string(),
            message_id: message_id.clone(),
        };
        crate::lake::write_atomic(
            &dir.join(format!("{file_key}.json")),
            &serde_json::to_vec_pretty(&envelope)?,
        )?;
        ledger.append(&EmailRecord {
            community: data.community_id.clone(),
            as_of: data.as_of,
            recipient: recipient.clone(),
            message_id,
            status: EmailStatus::Queued,
            attempts: 0,
            error: None,
            at: now(),
        })?;
        queued += 1;
    }
    Ok((queued, already))
}

/// Where queued messages go.
enum Transport {
    Outbox(PathBuf),
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// `SMTP server host:port (TLS mode)`, the start of every error about it.
        server: String,
    },
}

/// Why one delivery attempt failed.
enum SendError {
    Transient(String),
    Permanent(String),
}

/// The certificates of a PEM file (`email.ca_file`); the error names the file and the problem.
pub(crate) fn read_ca_file(path: &Path) -> std::result::Result<Certificate, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

/// A hint for the two TLS failures an operator can fix in the config.
fn tls_hint(error: &str) -> &'static str {
    if error.contains("UnknownIssuer") {
        " (the server's certificate is not signed by a trusted CA: for a private relay, set email.ca_file to its CA)"
    } else if error.contains("NotValidForName") || error.contains("not valid for name") {
        " (the server's certificate does not name email.host: set email.host to a name the certificate lists)"
    } else {
        ""
    }
}

impl Transport {
    fn new(config: &EmailConfig, state: &StateDir) -> Result<Transport> {
        match config.transport {
            EmailTransport::File => Ok(Transport::Outbox(state.root().join("outbox"))),
            EmailTransport::Smtp => {
                let host = config.host.as_deref().unwrap_or_default();
                let tls_error = |e: lettre::transport::smtp::Error| Error::Email {
                    context: format!("TLS for email.host `{host}`"),
                    source: e.into(),
                };
                let parameters = || {
                    let mut builder = TlsParameters::builder(host.to_string());
                    if let Some(path) = &config.ca_file {
                        let certificate = read_ca_file(path).map_err(|message| Error::Email {
                            context: "email.ca_file".into(),
                            source: message.into(),
                        })?;
                        builder = builder.add_root_certificate(certificate);
                    }
                    builder.build().map_err(tls_error)
                };
                let (tls, mode) = match config.tls {
                    SmtpTls::Starttls => (Tls::Required(parameters()?), "STARTTLS"),
                    SmtpTls::Tls => (Tls::Wrapper(parameters()?), "implicit TLS"),
                    SmtpTls::None => (Tls::None, "no TLS"),
                };
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .tls(tls)
                    .port(config.port)
                    .timeout(Some(Duration::from_secs(config.timeout_secs)));
                if let Some(user) = &config.username {
                    let var = config
                        .password_env
                        .as_deref()
                        .unwrap_or("PULSE_SMTP_PASSWORD");
                    let password = std::env::var(var).map_err(|e| Error::Email {
                        context: format!(
                            "email.username is set but the environment variable {var} (email.password_env) that holds the SMTP password is not"
                        ),
                        source: e.into(),
                    })?;
                    builder = builder.credentials(Credentials::new(user.clone(), password));
                }
                Ok(Transport::Smtp {
                    transport: builder.build(),
                    server: format!("SMTP server {host}:{} ({mode})", config.port),
                })
            }
        }
    }

    async fn send(&self, q: &Queued, key: &str, bytes: &[u8]) -> Result<(), SendError> {
        match self {
            Transport::Outbox(dir) => {
                let path = dir
                    .join(&q.community)
                    .join(q.as_of.to_string())
                    .join(format!("{}.eml", key));
                crate::lake::write_atomic(&path, bytes)
                    .map_err(|e| SendError::Transient(e.to_string()))
            }
            Transport::Smtp { transport, server } => {
                let parse = |a: &str| {
                    a.parse::<Mailbox>()
                        .map(|m| m.email)
                        .map_err(|e| SendError::Permanent(format!("address `{a}`: {e}")))
                };
                let envelope = Envelope::new(Some(parse(&q.from)?), vec![parse(&q.recipient)?])
                    .map_err(|e| SendError::Permanent(e.to_string()))?;
                match transport.send_raw(&envelope, bytes).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_permanent() => {
                        Err(SendError::Permanent(format!("{server}: {e}")))
                    }
                    Err(e) => {
                        // lettre nests a connection error in another ("Connection error:
                        // Connection error: invalid peer certificate …"): say it once.
                        let mut parts: Vec<String> = Vec::new();
                        for part in e.to_string().split(": ") {
                            if parts.last().map(String::as_str) != Some(part) {
                                parts.push(part.to_string());
                            }
                        }
                        let e = parts.join(": ");
                        Err(SendError::Transient(format!(
                            "{server}: {e}{}",
                            tls_hint(&e)
                        )))
                    }
                }
            }
        }
    }
}

/// Try to send every queued message (oldest first), retrying transient failures with backoff.
pub async fn flush(config: &EmailConfig, state: &StateDir) -> Result<FlushStats> {
    let dir = queue_dir(state);
    let mut queued: Vec<(String, Queued)> = Vec::new();
    if dir.exists() {
        for entry in std::fs::read_dir(&dir).io_context(|| format!("listing {}", dir.display()))? {
            let path = entry
                .io_context(|| format!("listing {}", dir.display()))?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read(&path).io_context(|| format!("reading {}", path.display()))?;
            let q: Queued = serde_json::from_slice(&text)?;
            let key = path.file_stem().unwrap().to_string_lossy().into_owned();
            queued.push((key, q));
        }
    }
    let mut stats = FlushStats::default();
    if queued.is_empty() {
        return Ok(stats);
    }
    queued.sort_by(|a, b| (a.1.as_of, &a.0).cmp(&(b.1.as_of, &b.0)));
    let transport = Transport::new(config, state)?;
    let ledger = ledger(state);
    for (key, q) in queued {
        let eml = dir.join(format!("{key}.eml"));
        let bytes = std::fs::read(&eml).io_context(|| format!("reading {}", eml.display()))?;
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            match transport.send(&q, &key, &bytes).await {
                Ok(()) => break Ok(()),
                Err(SendError::Transient(e)) if attempts < config.max_attempts => {
                    let delay = config
                        .retry_initial_ms
                        .saturating_mul(1 << (attempts - 1).min(16));
                    tracing::warn!(recipient = %q.recipient, community = %q.community, as_of = %q.as_of, attempt = attempts, "sending failed, retrying in {delay} ms: {e}");
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                Err(e) => break Err(e),
            }
        };
        let (status, error) = match &outcome {
            Ok(()) => (EmailStatus::Sent, None),
            Err(SendError::Transient(e)) => (EmailStatus::Failed, Some(e.clone())),
            Err(SendError::Permanent(e)) => (EmailStatus::Rejected, Some(e.clone())),
        };
        ledger.append(&EmailRecord {
            community: q.community.clone(),
            as_of: q.as_of,
            recipient: q.recipient.clone(),
            message_id: q.message_id.clone(),
            status,
            attempts,
            error: error.clone(),
            at: now(),
        })?;
        let sidecar = dir.join(format!("{key}.json"));
        match status {
            EmailStatus::Sent => {
                remove(&sidecar)?;
                remove(&eml)?;
                stats.sent += 1;
                tracing::info!(recipient = %q.recipient, community = %q.community, as_of = %q.as_of, "report sent");
            }
            EmailStatus::Rejected => {
                let rejected = state.root().join("mail").join("rejected");
                std::fs::create_dir_all(&rejected)
                    .io_context(|| format!("creating {}", rejected.display()))?;
                for path in [&eml, &sidecar] {
                    let to = rejected.join(path.file_name().unwrap());
                    std::fs::rename(path, &to)
                        .io_context(|| format!("moving {} to {}", path.display(), to.display()))?;
                }
                stats.rejected.push(format!(
                    "{} ({} as_of {}): {}",
                    q.recipient,
                    q.community,
                    q.as_of,
                    error.unwrap_or_default()
                ));
            }
            _ => stats.failed.push(format!(
                "{} ({} as_of {}) after {attempts} attempt(s): {}",
                q.recipient,
                q.community,
                q.as_of,
                error.unwrap_or_default()
            )),
        }
    }
    Ok(stats)
}

fn remove(path: &Path) -> Result<()> {
    std::fs::remove_file(path).io_context(|| format!("removing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_file_names_and_differ_per_recipient() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let a = message_key("c1", d, "Ops <ops@example.com>");
        let b = message_key("c1", d, "ops@example.com");
        assert_ne!(a, b);
        // It is also the left side of the Message-ID: no `@`, spaces or brackets.
        assert!(!a.contains(['/', '<', '>', ' ', '@']), "{a}");
    }

    #[test]
    fn latest_status_wins_and_generations_count_queueings() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let r = |status| EmailRecord {
            community: "c".into(),
            as_of: d,
            recipient: "a@b.c".into(),
            message_id: "m".into(),
            status,
            attempts: 1,
            error: None,
            at: now(),
        };
        let map = latest(&[
            r(EmailStatus::Queued),
            r(EmailStatus::Failed),
            r(EmailStatus::Sent),
            r(EmailStatus::Queued),
        ]);
        assert_eq!(
            map[&("c".to_string(), d, "a@b.c".to_string())],
            (EmailStatus::Queued, 2)
        );
    }
}
