//! Community Pulse: events from webhooks and exports into a Parquet lake, metrics computed with
//! DataFusion SQL, reports and ranked member lists delivered.
//!
//! The modules follow the data: [`ingest`] (files, later webhooks) → [`lake`] (Parquet) →
//! [`models`] (DataFusion over the SQL in `queries/`) → [`deliver`] (the emailed report);
//! [`engine`] builds the DataFusion sessions over the lake's tables, [`state`] remembers what
//! was sent, [`config`] is the typed configuration and [`cli`] drives it all.

pub mod cli;
pub mod config;
pub mod deliver;
pub mod demo;
pub mod engine;
pub mod error;
pub mod event;
pub mod generate;
pub mod ingest;
pub mod lake;
pub mod models;
pub mod schedule;
pub mod spool;
pub mod state;

pub use error::{Error, Result};
