//! The process's own Prometheus metrics (not the lake's metric tables): what `pulse serve`
//! shows on `GET /metrics`, in the OpenMetrics text format (prometheus-client).
//!
//! One registry per process, reached through [`get`]: the receiver, the spool, the compactor
//! and the pipeline record into it wherever they run, without a handle threaded through every
//! call. A `pulse run` records too, into a registry nobody scrapes; its runs reach a
//! `pulse serve` beside it through the run history, which [`Telemetry::encode`] reads for the
//! last successful run of each community.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pulse_ingest_events_total` | counter | `source`, `outcome` |
//! | `pulse_http_request_seconds` | histogram | `route` |
//! | `pulse_spool_bytes` | gauge | |
//! | `pulse_spool_fsync_seconds` | histogram | |
//! | `pulse_spool_compaction_seconds` | histogram | `outcome` |
//! | `pulse_runs_total` | counter | `outcome` |
//! | `pulse_run_stage_seconds` | histogram | `stage` |
//! | `pulse_deliveries_total` | counter | `sink_kind`, `outcome` |
//! | `pulse_emails_total` | counter | `outcome` |
//! | `pulse_last_success_timestamp_seconds` | gauge | `community` |

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::pipeline::history::{RunKind, RunRecord, RunStatus};

/// The content type of [`Telemetry::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOutcome {
    source: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Stage {
    stage: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkOutcome {
    sink_kind: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Community {
    community: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.5 ms to ~16 s: a request is answered once its events are fsynced.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// 0.1 ms to ~3 s: a healthy disk syncs in milliseconds; the tail is what matters.
fn fsync_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// 50 ms to ~27 min: compactions and run stages, from a tiny community to a backfill-sized one.
fn stage_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// The registry and a handle on each metric in it (handles share their values with the
/// registry's copies).
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    ingest_events: Family<SourceOutcome, Counter>,
    request_seconds: Histograms<Route>,
    spool_bytes: Gauge,
    fsync_seconds: Histogram,
    compaction_seconds: Histograms<Outcome>,
    runs: Family<Outcome, Counter>,
    run_stage_seconds: Histograms<Stage>,
    deliveries: Family<SinkOutcome, Counter>,
    emails: Family<Outcome, Counter>,
    last_success: Family<Community, Gauge<f64, AtomicU64>>,
}

static TELEMETRY: LazyLock<Telemetry> = LazyLock::new(Telemetry::new);

/// The process's metrics.
pub fn get() -> &'static Telemetry {
    &TELEMETRY
}

impl Telemetry {
    fn new() -> Telemetry {
        let mut t = Telemetry {
            registry: Registry::with_prefix("pulse"),
            ingest_events: Family::default(),
            request_seconds: Family::new_with_constructor(request_buckets),
            spool_bytes: Gauge::default(),
            fsync_seconds: fsync_buckets(),
            compaction_seconds: Family::new_with_constructor(stage_buckets),
            runs: Family::default(),
            run_stage_seconds: Family::new_with_constructor(stage_buckets),
            deliveries: Family::default(),
            emails: Family::default(),
            last_success: Family::default(),
        };
        t.registry.register(
            "ingest_events",
            "Webhook and /v1/events deliveries by source and outcome (accepted counts events; refusals count requests)",
            t.ingest_events.clone(),
        );
        t.registry.register(
            "http_request_seconds",
            "Time to answer a request to the webhook receiver, by route",
            t.request_seconds.clone(),
        );
        t.registry.register(
            "spool_bytes",
            "Bytes in the webhook spool not yet moved into the lake",
            t.spool_bytes.clone(),
        );
        t.registry.register(
            "spool_fsync_seconds",
            "Time of one group-committed write and fsync of the spool",
            t.fsync_seconds.clone(),
        );
        t.registry.register(
            "spool_compaction_seconds",
            "Time to move the sealed spool segments into the lake, by outcome",
            t.compaction_seconds.clone(),
        );
        t.registry.register(
            "runs",
            "Pipeline runs of this process that ended, by outcome",
            t.runs.clone(),
        );
        t.registry.register(
            "run_stage_seconds",
            "Duration of each stage of a pipeline run (exports, spool, models, deliver, ...)",
            t.run_stage_seconds.clone(),
        );
        t.registry.register(
            "deliveries",
            "Ranked-list deliveries by sink kind and outcome",
            t.deliveries.clone(),
        );
        t.registry.register(
            "emails",
            "Report emails by outcome (sent, failed: still queued, rejected)",
            t.emails.clone(),
        );
        t.registry.register(
            "last_success_timestamp_seconds",
            "When the last successful run of each community finished (Unix time), from the run history",
            t.last_success.clone(),
        );
        t
    }

    /// `n` events or requests of `source` with `outcome` (accepted, unauthorized, invalid, …).
    pub fn ingest(&self, source: &str, outcome: &str, n: u64) {
        self.ingest_events
            .get_or_create(&SourceOutcome {
                source: source.into(),
                outcome: outcome.into(),
            })
            .inc_by(n);
    }

    pub fn request(&self, route: &str, seconds: f64) {
        self.request_seconds
            .get_or_create(&Route {
                route: route.into(),
            })
            .observe(seconds);
    }

    pub fn fsync(&self, seconds: f64) {
        self.fsync_seconds.observe(seconds);
    }

    pub fn compaction(&self, ok: bool, seconds: f64) {
        self.compaction_seconds
            .get_or_create(&outcome(if ok { "ok" } else { "failed" }))
            .observe(seconds);
    }

    /// A run that ended: its outcome and the duration of each stage.
    pub fn run_ended(&self, record: &RunRecord) {
        self.runs
            .get_or_create(&outcome(status_name(record.status)))
            .inc();
        for stage in &record.stages {
            self.run_stage_seconds
                .get_or_create(&Stage {
                    stage: stage.name.clone(),
                })
                .observe(stage.seconds);
        }
    }

    /// A ranked list handed to a sink named `kind:…` (`file:…`, `webhook:…`).
    pub fn delivery(&self, sink: &str, ok: bool) {
        let kind = sink.split_once(':').map_or(sink, |(kind, _)| kind);
        self.deliveries
            .get_or_create(&SinkOutcome {
                sink_kind: kind.into(),
                outcome: if ok { "delivered" } else { "failed" }.into(),
            })
            .inc();
    }

    /// `n` emails with `outcome` (sent, failed, rejected).
    pub fn emails(&self, outcome_name: &str, n: u64) {
        if n > 0 {
            self.emails.get_or_create(&outcome(outcome_name)).inc_by(n);
        }
    }

    /// The text of `GET /metrics`: `spool_bytes` and the last successful run of each community
    /// (from `runs`, the run history, which every process writes) as of now.
    pub fn encode(&self, spool_bytes: u64, runs: &[RunRecord]) -> String {
        self.spool_bytes
            .set(i64::try_from(spool_bytes).unwrap_or(i64::MAX));
        for (community, at) in last_successes(runs) {
            self.last_success
                .get_or_create(&Community { community })
                .set(at);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

fn outcome(name: &str) -> Outcome {
    Outcome {
        outcome: name.into(),
    }
}

fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Abandoned => "abandoned",
    }
}

/// Per community, when its latest successful run (scheduled, manual or backfill) finished, in
/// seconds since the epoch.
fn last_successes(runs: &[RunRecord]) -> BTreeMap<String, f64> {
    let mut last: BTreeMap<String, f64> = BTreeMap::new();
    for r in runs {
        let is_run = matches!(
            r.kind,
            RunKind::Scheduled | RunKind::Manual | RunKind::Backfill
        );
        if let (true, RunStatus::Succeeded, Some(at)) = (is_run, r.status, r.finished_at) {
            let at = at.timestamp_micros() as f64 / 1e6;
            let entry = last.entry(r.community.clone()).or_insert(at);
            *entry = entry.max(at);
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone, Utc};

    fn record(community: &str, kind: RunKind, status: RunStatus, finished: i64) -> RunRecord {
        RunRecord {
            run_id: format!("{community}-{finished}"),
            kind,
            community: community.into(),
            as_of: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            due_at: None,
            job: None,
            status,
            late: false,
            started_at: Utc.timestamp_opt(finished - 5, 0).unwrap(),
            finished_at: Some(Utc.timestamp_opt(finished, 0).unwrap()),
            stages: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn last_success_is_the_latest_succeeded_run_not_a_registration_or_failure() {
        let runs = [
            record("a", RunKind::Manual, RunStatus::Succeeded, 100),
            record("a", RunKind::Scheduled, RunStatus::Succeeded, 300),
            record("a", RunKind::Manual, RunStatus::Failed, 400),
            record("a", RunKind::Backfill, RunStatus::Succeeded, 200),
            record("b", RunKind::Registered, RunStatus::Succeeded, 500),
            record("c", RunKind::Erasure, RunStatus::Succeeded, 600),
        ];
        let last = last_successes(&runs);
        assert_eq!(last, BTreeMap::from([("a".to_string(), 300.0)]));
    }

    #[test]
    fn encoded_text_has_every_family_and_ends_with_eof() {
        let t = Telemetry::new();
        t.ingest("forum", "accepted", 3);
        t.request("/v1/events", 0.002);
        t.fsync(0.0004);
        t.delivery("webhook:https://user:***@example.com/hook", true);
        let text = t.encode(
            42,
            &[record("a", RunKind::Manual, RunStatus::Succeeded, 300)],
        );
        assert!(text.contains("pulse_ingest_events_total{source=\"forum\",outcome=\"accepted\"} 3"));
        assert!(text.contains("pulse_spool_bytes 42"));
        assert!(text.contains("pulse_spool_fsync_seconds_count 1"));
        assert!(text.contains("pulse_http_request_seconds_count{route=\"/v1/events\"} 1"));
        assert!(
            text.contains("pulse_deliveries_total{sink_kind=\"webhook\",outcome=\"delivered\"} 1")
        );
        assert!(text.contains("pulse_last_success_timestamp_seconds{community=\"a\"} 300.0"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
