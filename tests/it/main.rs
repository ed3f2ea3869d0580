//! One integration-test binary (one link of DataFusion instead of one per file).

mod common;
mod compact;
mod config_check;
mod demo;
mod emerging;
mod files;
mod generate;
mod import;
mod insights;
mod membership;
mod models;
mod privacy;
mod query;
mod report;
mod schedule;
mod table;
