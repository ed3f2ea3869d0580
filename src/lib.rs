//! Community Pulse: events from webhooks and exports into a Parquet lake, metrics computed with
//! DataFusion SQL, reports and ranked member lists delivered.
//!
//! The modules follow the data:
//!
//! - [`ingest`] (webhook receiver, adapters, files and export pickup) → [`spool`] (durable
//!   intake) → [`lake`] (Hive-partitioned Parquet, local or object store);
//! - [`engine`] builds DataFusion sessions over the lake's catalog; [`models`] runs the SQL
//!   models of `queries/` (and PageRank) into the metric tables;
//! - [`report`] reads the metric tables back and emails the report; [`sinks`] hand the ranked
//!   lists to files and signed webhooks;
//! - [`pipeline`] strings one run together (intake → models → report → email → sinks) and keeps
//!   the run history; [`schedule`] says when runs are due; [`serve`] runs the receiver, the
//!   spool compactor and the scheduler; [`cli`] is the command line.
//!
//! [`privacy`] keeps names apart from the lake (the member directory), erases members
//! (`pulse forget`) and applies text retention.
//!
//! Shared pieces: [`config`] (typed, validated configuration), [`event`] (the canonical event),
//! [`signature`] (webhook signature schemes, in and out), [`state`] (what was sent and
//! delivered), [`generate`] (synthetic communities), [`telemetry`] (the process's Prometheus
//! metrics, on `pulse serve`'s /metrics), [`error`].

pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod generate;
pub mod ingest;
pub mod lake;
pub mod models;
pub mod pipeline;
pub mod privacy;
pub mod report;
pub mod schedule;
pub mod serve;
pub mod signature;
pub mod sinks;
pub mod spool;
pub mod state;
pub mod telemetry;

pub use error::{Error, Result};
