//! Schemas of the metric tables (SPEC §5), as stored in Parquet: the partition columns
//! `community_id` and `as_of` live in the directory names and are added back by readers.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

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

/// Every metric table with its file schema, in SPEC §5 order.
pub fn metric_tables() -> Vec<(&'static str, SchemaRef)> {
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
    ]
}
