//! The lake's tables, in one list: `events`, every metric table (SPEC §5) and every rollup, each
//! with its lake path, the schema of its Parquet files and its Hive partition columns (which
//! live in directory names and are added back by readers). [`register_all`] registers them
//! all, with explicit schemas so an empty lake is a valid lake; every session gets them
//! ([`super::session`]), so models, the report, the sinks and `pulse query` see the same tables.
//!
//! The SQL that produces the metric tables and rollups is in `queries/` (`marts/`, `rollups/`);
//! `models` checks that every mart and rollup has its table here, and a unit test there checks
//! that each rollup's schema below is the one its SQL plans.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::SessionContext;

use crate::error::Result;
use crate::lake::Lake;

/// What a lake table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// The canonical events (SPEC §2), written by ingestion.
    Events,
    /// A metric table (SPEC §5), written by a mart model per community and as_of.
    Metric,
    /// An incremental per-month rollup of the events, read by the models.
    Rollup,
}

/// One table of the lake.
#[derive(Debug, Clone)]
pub struct LakeTable {
    pub name: &'static str,
    pub kind: TableKind,
    /// The lake path of the table's directory (`metrics/<name>`, …).
    pub path: String,
    /// The columns inside its Parquet files.
    pub file_schema: SchemaRef,
    /// Hive partition columns, outermost first.
    pub partition_cols: Vec<(&'static str, DataType)>,
}

/// Every table of the lake: `events`, the metric tables in SPEC §5 order, the rollups.
pub fn tables() -> Vec<LakeTable> {
    let events = LakeTable {
        name: "events",
        kind: TableKind::Events,
        path: crate::lake::EVENTS.to_string(),
        file_schema: crate::event::file_schema(),
        partition_cols: vec![
            ("community_id", DataType::Utf8),
            ("event_date", DataType::Date32),
        ],
    };
    let metrics = metric_schemas()
        .into_iter()
        .map(|(name, schema)| LakeTable {
            name,
            kind: TableKind::Metric,
            path: crate::lake::metrics_path(name),
            file_schema: schema,
            partition_cols: vec![
                ("community_id", DataType::Utf8),
                ("as_of", DataType::Date32),
            ],
        });
    let rollups = rollup_schemas()
        .into_iter()
        .map(|(name, schema)| LakeTable {
            name,
            kind: TableKind::Rollup,
            path: crate::lake::rollups_path(name),
            file_schema: schema,
            partition_cols: vec![
                ("community_id", DataType::Utf8),
                ("event_month", DataType::Date32),
            ],
        });
    std::iter::once(events)
        .chain(metrics)
        .chain(rollups)
        .collect()
}

/// The tables of one kind, in [`tables`] order.
pub fn of_kind(kind: TableKind) -> Vec<LakeTable> {
    tables().into_iter().filter(|t| t.kind == kind).collect()
}

/// The table called `name`, if the lake has one.
pub fn table(name: &str) -> Option<LakeTable> {
    tables().into_iter().find(|t| t.name == name)
}

/// Register every table of the lake in `ctx`.
pub async fn register_all(ctx: &SessionContext, lake: &Lake) -> Result<()> {
    for t in tables() {
        register(ctx, lake, &t).await?;
    }
    Ok(())
}

/// Register `table` (Hive-partitioned Parquet under its lake path) with its known schema.
pub async fn register(ctx: &SessionContext, lake: &Lake, table: &LakeTable) -> Result<()> {
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            table
                .partition_cols
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
        );
    let url = lake.table_url(&table.path)?;
    ctx.register_listing_table(
        table.name,
        url,
        options,
        Some(table.file_schema.clone()),
        None,
    )
    .await?;
    Ok(())
}

fn schema(fields: Vec<(&str, DataType, bool)>) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .into_iter()
            .map(|(n, t, null)| Field::new(n, t, null))
            .collect::<Vec<_>>(),
    ))
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The file schema of each rollup: what its SQL (`queries/rollups/<name>.sql`) plans, checked
/// by `models::rollups`' tests.
fn rollup_schemas() -> Vec<(&'static str, SchemaRef)> {
    use DataType::*;
    vec![
        (
            "member_day_types",
            schema(vec![
                ("event_date", Date32, false),
                ("member_id", Utf8, false),
                ("day", Date32, true),
                ("event_type", Utf8, false),
                ("currency", Utf8, true),
                ("n", Int64, false),
                ("first_at", ts(), true),
                ("last_at", ts(), true),
                ("amount_minor", Int64, true),
            ]),
        ),
        (
            "member_edges",
            schema(vec![
                ("event_date", Date32, false),
                ("member_id", Utf8, false),
                ("target_member_id", Utf8, true),
                ("about", Utf8, true),
                ("day", Date32, true),
                ("event_type", Utf8, false),
                ("n", Int64, false),
            ]),
        ),
        (
            "post_words",
            schema(vec![
                ("event_date", Date32, false),
                ("source", Utf8, false),
                ("event_id", Utf8, false),
                ("term", Utf8, true),
            ]),
        ),
        (
            "content_authors",
            schema(vec![
                ("event_date", Date32, false),
                ("content_id", Utf8, true),
                ("member_id", Utf8, false),
                ("occurred_at", ts(), false),
                ("received_at", ts(), false),
                ("event_id", Utf8, false),
                ("source", Utf8, false),
            ]),
        ),
        (
            "member_months",
            schema(vec![
                ("member_id", Utf8, false),
                ("month", Date32, true),
                ("first_at", ts(), true),
                ("first_day", Date32, true),
                ("last_active_at", ts(), true),
            ]),
        ),
        (
            "membership_events",
            schema(vec![
                ("event_date", Date32, false),
                ("member_id", Utf8, false),
                ("event_type", Utf8, false),
                ("occurred_at", ts(), false),
                ("received_at", ts(), false),
                ("day", Date32, true),
            ]),
        ),
        (
            "payment_events",
            schema(vec![
                ("event_date", Date32, false),
                ("member_id", Utf8, false),
                ("event_type", Utf8, false),
                ("event_id", Utf8, false),
                ("source", Utf8, false),
                ("occurred_at", ts(), false),
                ("received_at", ts(), false),
                ("content_id", Utf8, true),
                ("amount_minor", Int64, true),
                ("currency", Utf8, true),
                ("day", Date32, true),
            ]),
        ),
    ]
}

/// Every metric table with its file schema, in SPEC §5 order.
fn metric_schemas() -> Vec<(&'static str, SchemaRef)> {
    use DataType::*;
    vec![
        (
            "member_activity",
            schema(vec![
                ("member_id", Utf8, false),
                ("participation", Int64, false),
                ("interaction", Int64, false),
                ("contribution", Int64, false),
                ("retention", Float64, false),
                ("activity_score", Float64, false),
                ("active_days", Int64, false),
                ("points", Float64, false),
                ("tier", Utf8, false),
                ("first_seen_at", ts(), false),
                ("last_active_at", ts(), true),
                // Nullable only so partitions written before §4.10 still read (as nulls).
                ("checkin_streak", Int64, true),
                ("longest_checkin_streak", Int64, true),
            ]),
        ),
        (
            "member_influence",
            schema(vec![
                ("member_id", Utf8, false),
                ("reach", Int64, false),
                ("interactions_received", Int64, false),
                ("pagerank", Float64, true),
            ]),
        ),
        (
            "community_influence",
            schema(vec![
                ("size_total", Int64, false),
                ("members", Int64, false),
                ("activity_rate", Float64, false),
                ("participation_rate", Float64, false),
                ("influence", Float64, false),
            ]),
        ),
        (
            "retention_cohorts",
            schema(vec![
                ("cohort_start", Date32, false),
                ("period_offset", Int64, false),
                ("cohort_size", Int64, false),
                ("retained", Int64, false),
                ("retention_rate", Float64, false),
                ("is_partial", Boolean, false),
            ]),
        ),
        (
            "demand_categories",
            schema(vec![
                ("taxonomy", Utf8, false),
                ("category", Utf8, false),
                ("posts", Int64, false),
                ("members", Int64, false),
                ("share", Float64, false),
                ("prev_posts", Int64, false),
                ("growth", Float64, false),
                ("unanswered", Int64, false),
                ("unanswered_rate", Float64, false),
                ("priority", Float64, false),
                ("priority_rank", Int64, false),
            ]),
        ),
        (
            "emerging_terms",
            schema(vec![
                ("taxonomy", Utf8, false),
                ("rank", Int64, false),
                ("term", Utf8, false),
                ("authors", Int64, false),
                ("posts", Int64, false),
                ("prev_authors", Int64, false),
                ("growth", Float64, false),
                ("category", Utf8, true),
                ("category_posts", Int64, false),
                (
                    "examples",
                    List(Arc::new(Field::new_list_field(Utf8, true))),
                    true,
                ),
            ]),
        ),
        (
            "ranked_members",
            schema(vec![
                ("rank", Int64, false),
                ("member_id", Utf8, false),
                ("activity_score", Float64, false),
                ("points", Float64, false),
                ("tier", Utf8, false),
            ]),
        ),
        (
            "kpis",
            schema(vec![
                ("metric", Utf8, false),
                ("value", Float64, true),
                ("prev_value", Float64, true),
            ]),
        ),
        (
            "membership",
            schema(vec![
                ("member_id", Utf8, false),
                ("status", Utf8, false),
                ("paid_until", ts(), true),
                ("days_left", Int64, true),
                ("first_paid_at", ts(), true),
                ("spell_start", ts(), true),
                ("spells", Int64, false),
                ("purchases", Int64, false),
                ("refunds", Int64, false),
                ("tier", Utf8, false),
                ("active_days", Int64, false),
                ("last_active_at", ts(), true),
            ]),
        ),
        (
            "revenue_cohorts",
            schema(vec![
                ("cohort_start", Date32, false),
                ("currency", Utf8, false),
                ("period_offset", Int64, false),
                ("cohort_size", Int64, false),
                ("paying", Int64, false),
                ("paying_rate", Float64, false),
                ("net_revenue_minor", Int64, false),
                ("revenue_retention", Float64, true),
                ("is_partial", Boolean, false),
            ]),
        ),
        (
            "tier_transitions",
            schema(vec![
                ("from_tier", Utf8, true),
                ("to_tier", Utf8, false),
                ("direction", Utf8, false),
                ("members", Int64, false),
                ("member_ids", list_of(Utf8), false),
            ]),
        ),
        (
            "top_content",
            schema(vec![
                ("rank", Int64, false),
                ("source", Utf8, false),
                ("event_id", Utf8, false),
                ("content_id", Utf8, true),
                ("member_id", Utf8, false),
                ("title", Utf8, true),
                ("occurred_at", ts(), false),
                ("engagers", Int64, false),
                ("comments", Int64, false),
                ("likes", Int64, false),
                ("shares", Int64, false),
                ("cites", Int64, false),
                ("categories", list_of(Utf8), true),
            ]),
        ),
        (
            "category_health",
            schema(vec![
                ("taxonomy", Utf8, false),
                ("category", Utf8, false),
                ("posts", Int64, false),
                ("replied", Int64, false),
                ("open", Int64, false),
                ("median_reply_hours", Float64, true),
                ("p90_reply_hours", Float64, true),
                ("due_48h", Int64, false),
                ("answered_48h", Int64, false),
                ("answered_48h_rate", Float64, true),
                ("engagement_per_post", Float64, true),
                ("prev_engagement_per_post", Float64, true),
            ]),
        ),
    ]
}

/// A list column (Arrow's `item` field, nullable, as `array_agg` makes it).
fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}
