//! The metric models (SPEC §4): SQL files in `queries/`, run by DataFusion.

mod schema;

pub use schema::metric_tables;
