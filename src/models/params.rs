//! What a run is about and what it binds: the window of SPEC §3 ([`RunWindow`]), the bound
//! parameters of the models and the report queries ([`parameters`]), and the parameter tables
//! (config lists the SQL joins with, [`register_parameter_tables`]). Nothing from the config is
//! pasted into SQL text.

use std::sync::Arc;

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;

use crate::config::{CohortGrain, CommunitySettings, Normalization};
use crate::error::Result;

/// The parameter tables ([`register_parameter_tables`]): lists from the config the SQL joins with.
pub const PARAMETER_TABLES: [&str; 7] = [
    "p_active_types",
    "p_points",
    "p_excluded",
    "p_categories",
    "p_keywords",
    "p_product_terms",
    "p_stopwords",
];

/// The dates and instants one run is about (SPEC §3), for a community timezone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunWindow {
    /// D: the run sees events before local midnight starting D.
    pub as_of: NaiveDate,
    /// First local day of W (D − window_days).
    pub w_start: NaiveDate,
    /// First local day of W′ (D − 2·window_days).
    pub wp_start: NaiveDate,
    /// First local day of W″, the window before W′ (D − 3·window_days): the tiers at the start
    /// of W (SPEC §4.3 at D − window_days) read its active days for their `at_risk` rule.
    pub wpp_start: NaiveDate,
    /// Instants (µs, UTC) of local midnight starting D, W and W′.
    pub as_of_ts: i64,
    pub w_start_ts: i64,
    pub wp_start_ts: i64,
}

/// The first instant of local day `day` in `tz`, µs since the epoch. When midnight does not
/// exist (a DST jump at midnight), the day starts at the first instant that does.
pub fn local_midnight(day: NaiveDate, tz: chrono_tz::Tz) -> i64 {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight");
    (0..=180)
        .find_map(|minutes| {
            tz.from_local_datetime(&(midnight + Duration::minutes(minutes)))
                .earliest()
        })
        .map(|t| t.timestamp_micros())
        .expect("every day has a first instant")
}

impl RunWindow {
    pub fn new(as_of: NaiveDate, window_days: u32, tz: chrono_tz::Tz) -> RunWindow {
        let w_start = as_of - Duration::days(window_days as i64);
        let wp_start = w_start - Duration::days(window_days as i64);
        RunWindow {
            as_of,
            w_start,
            wp_start,
            wpp_start: wp_start - Duration::days(window_days as i64),
            as_of_ts: local_midnight(as_of, tz),
            w_start_ts: local_midnight(w_start, tz),
            wp_start_ts: local_midnight(wp_start, tz),
        }
    }
}

/// `days` exact 24-hour days in µs.
fn day_us(days: u32) -> i64 {
    days as i64 * 86_400_000_000
}

fn timestamp(micros: i64) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into()))
}

/// The bound parameters of the metric models (and of the report queries).
pub fn parameters(s: &CommunitySettings, w: &RunWindow) -> Vec<(&'static str, ScalarValue)> {
    let date = crate::engine::functions::date_scalar;
    let utf8 = |v: &str| ScalarValue::Utf8(Some(v.to_string()));
    let int = |v: u32| ScalarValue::Int64(Some(v as i64));
    let float = |v: f64| ScalarValue::Float64(Some(v));
    // A local day lies within one UTC day either side of the same calendar date.
    let utc_from = |d: NaiveDate| date(d - Duration::days(1));
    let as_of_month = w.as_of.with_day(1).expect("day 1 exists");
    let mut params = vec![
        ("community", utf8(&s.id)),
        ("tz", utf8(s.timezone.name())),
        ("as_of", date(w.as_of)),
        ("last_day", date(w.as_of - Duration::days(1))),
        // The first day of as_of's month: whole-history models read the months before it from
        // the monthly rollup (member_months) and only its days from the daily one.
        ("as_of_month", date(as_of_month)),
        ("w_start", date(w.w_start)),
        ("wp_start", date(w.wp_start)),
        ("wpp_start", date(w.wpp_start)),
        ("as_of_ts", timestamp(w.as_of_ts)),
        ("w_start_ts", timestamp(w.w_start_ts)),
        ("wp_start_ts", timestamp(w.wp_start_ts)),
        ("w_scan_from", utc_from(w.w_start)),
        ("wp_scan_from", utc_from(w.wp_start)),
        ("wpp_scan_from", utc_from(w.wpp_start)),
        ("as_of_month_scan_from", utc_from(as_of_month)),
        ("scan_to", date(w.as_of)),
        ("window_days", int(s.window_days)),
        (
            "percentile",
            ScalarValue::Boolean(Some(s.normalization == Normalization::Percentile)),
        ),
        (
            "weight_participation",
            float(s.activity_weights.participation),
        ),
        ("weight_interaction", float(s.activity_weights.interaction)),
        (
            "weight_contribution",
            float(s.activity_weights.contribution),
        ),
        ("weight_retention", float(s.activity_weights.retention)),
        (
            "contributor_min_contribution",
            int(s.tiers.contributor_min_contribution),
        ),
        ("active_min_days", int(s.tiers.active_min_days)),
        ("at_risk_prev_min_days", int(s.tiers.at_risk_prev_min_days)),
        ("top_n", int(s.top_n)),
        ("term_days", int(s.membership.term_days)),
        ("grace_days", int(s.membership.grace_days)),
        ("horizon_days", int(s.membership.horizon_days)),
        // §4.9 counts in instants and exact 24-hour days, as integer µs since the epoch.
        ("as_of_us", ScalarValue::Int64(Some(w.as_of_ts))),
        ("w_start_us", ScalarValue::Int64(Some(w.w_start_ts))),
        ("wp_start_us", ScalarValue::Int64(Some(w.wp_start_ts))),
        (
            "term_us",
            ScalarValue::Int64(Some(day_us(s.membership.term_days))),
        ),
        (
            "grace_us",
            ScalarValue::Int64(Some(day_us(s.membership.grace_days))),
        ),
        ("cohort_periods", int(s.cohort_periods)),
        ("emerging_top_n", int(s.emerging.top_n)),
        ("emerging_min_authors", int(s.emerging.min_authors)),
        (
            "grain",
            utf8(if s.cohort_grain == CohortGrain::Week {
                "week"
            } else {
                "month"
            }),
        ),
    ];
    // §4.10: the check-in state the streaks continue from (see `super::streaks`).
    params.extend(super::streaks::state_parameters(
        super::streaks::state_through(w.as_of),
    ));
    params
}

pub(crate) fn string_column(values: impl IntoIterator<Item = String>) -> ArrayRef {
    let mut b = StringBuilder::new();
    for v in values {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

async fn register_rows(
    ctx: &SessionContext,
    name: &str,
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
) -> Result<()> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    crate::engine::register_batches(ctx, name, schema, vec![batch]).await
}

/// The parameter tables: lists from the config, as tables the SQL joins with.
pub async fn register_parameter_tables(ctx: &SessionContext, s: &CommunitySettings) -> Result<()> {
    let utf8 = |n: &str| Field::new(n, DataType::Utf8, false);
    register_rows(
        ctx,
        "p_active_types",
        vec![utf8("event_type")],
        vec![string_column(
            s.active_event_types.iter().map(|t| t.to_string()),
        )],
    )
    .await?;
    register_rows(
        ctx,
        "p_points",
        vec![
            utf8("event_type"),
            Field::new("weight", DataType::Float64, false),
            Field::new("daily_cap", DataType::Int64, false),
        ],
        vec![
            string_column(s.points.keys().map(|t| t.to_string())),
            Arc::new(Float64Array::from_iter_values(
                s.points.values().map(|p| p.weight),
            )),
            Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(
                s.points.values().map(|p| p.daily_cap as i64),
            )),
        ],
    )
    .await?;
    register_rows(
        ctx,
        "p_excluded",
        vec![utf8("member_id")],
        vec![string_column(s.exclude_members.iter().cloned())],
    )
    .await?;
    let categories: Vec<(String, String)> = s
        .taxonomies
        .iter()
        .flat_map(|t| {
            t.categories
                .iter()
                .map(move |c| (t.name.clone(), c.name.clone()))
        })
        .collect();
    register_rows(
        ctx,
        "p_categories",
        vec![utf8("taxonomy"), utf8("category")],
        vec![
            string_column(categories.iter().map(|c| c.0.clone())),
            string_column(categories.iter().map(|c| c.1.clone())),
        ],
    )
    .await?;
    register_rows(
        ctx,
        "p_product_terms",
        vec![
            utf8("product"),
            Field::new("term_days", DataType::Int64, false),
        ],
        vec![
            string_column(s.membership.product_terms.keys().cloned()),
            Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(
                s.membership.product_terms.values().map(|d| *d as i64),
            )),
        ],
    )
    .await?;
    register_rows(
        ctx,
        "p_stopwords",
        vec![utf8("word")],
        vec![string_column(s.emerging.extra_stopwords.iter().cloned())],
    )
    .await?;
    // Keywords are matched against lowercased text, so they are lowercased here too.
    let keywords: Vec<(String, String, String)> = s
        .taxonomies
        .iter()
        .flat_map(|t| {
            t.categories.iter().flat_map(move |c| {
                c.keywords
                    .iter()
                    .map(move |k| (t.name.clone(), c.name.clone(), k.to_lowercase()))
            })
        })
        .collect();
    register_rows(
        ctx,
        "p_keywords",
        vec![utf8("taxonomy"), utf8("category"), utf8("keyword")],
        vec![
            string_column(keywords.iter().map(|k| k.0.clone())),
            string_column(keywords.iter().map(|k| k.1.clone())),
            string_column(keywords.iter().map(|k| k.2.clone())),
        ],
    )
    .await
}
