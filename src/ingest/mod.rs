//! Getting events in: files (`pulse import`, export pickup), and webhooks (`pulse serve`:
//! [`server`] verifies [`crate::signature`]s, [`adapters`] map platform payloads to canonical events,
//! and the spool keeps them durable until they move to the lake).

pub mod adapters;
pub mod exports;
pub mod files;
pub mod server;
pub mod table;
