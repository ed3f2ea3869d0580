//! Getting events in: files (`pulse import`), and later webhooks and export pickup.

pub mod files;
