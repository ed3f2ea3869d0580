//! SQL functions the models need and DataFusion lacks.
//!
//! - `local_date(ts, tz)` → Date32: the local calendar day of a `Timestamp(µs, UTC)` in an IANA
//!   zone (SPEC §3: "day" means a local calendar day in the community's zone). DST is handled by
//!   chrono-tz, so a day is 23 or 25 hours long when it should be.
//! - `period_start(day, grain)` → Date32: the first day of the month, or the Monday of the ISO
//!   week, containing `day` (`grain` is 'month' or 'week'; SPEC §4.5 cohorts).
//! - `periods_between(start, later, grain)` → Int64: whole months or weeks from `start`'s period
//!   to `later`'s period (the cohort period offset k).
//! - `days_between(start, later)` → Int64: `later − start` in days.
//! - `epoch_us(ts)` → Int64: µs since 1970-01-01T00:00:00Z, and `from_epoch_us(n)` →
//!   `Timestamp(µs, UTC)`, its inverse: the membership model (SPEC §4.9) counts terms and grace
//!   in exact 24-hour days, as integer µs. (DuckDB has `epoch_us` built in.)
//! - `post_terms(text)` → List<Utf8>: the segmented, lowercased terms of a post, without stop
//!   words (emerging topics; defined in [`super::terms`]). DuckDB has no jieba: the
//!   cross-engine tests leave out the one model that uses it.
//!
//! - `min_by_keys(value, k1, …)` / `max_by_keys(value, k1, …)` (aggregates): the value of the row
//!   with the smallest / largest `(k1, …)`, instead of `row_number() … = 1` (defined in
//!   [`super::by_keys`]).
//!
//! DuckDB has the same functions as one-line macros (tests/python/duckdb_models.py), so
//! `queries/` runs on both engines unchanged.
//!
//! Timezones and grains arrive as bound parameters, so they are constants per call. A date
//! beyond chrono's calendar (Date32 reaches ±5.8 million years, chrono ±262,000) is an error
//! naming the day, not a panic.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, Date32Array, Int64Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{exec_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
struct LocalDate {
    signature: Signature,
}

/// The `local_date(ts, tz)` UDF.
pub fn local_date_udf() -> ScalarUDF {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    ScalarUDF::from(LocalDate {
        signature: Signature::new(
            TypeSignature::Exact(vec![ts, DataType::Utf8]),
            Volatility::Immutable,
        ),
    })
}

/// Days since 1970-01-01 of the local date of `micros` (µs since the epoch, UTC) in `tz`.
pub fn local_day_number(micros: i64, tz: Tz) -> i32 {
    let utc = DateTime::from_timestamp_micros(micros).unwrap_or_default();
    day_number(utc.with_timezone(&tz).date_naive())
}

/// Days since 1970-01-01 (Arrow's Date32).
pub fn day_number(date: NaiveDate) -> i32 {
    (date - epoch()).num_days() as i32
}

/// A date as a bound SQL parameter.
pub fn date_scalar(date: NaiveDate) -> ScalarValue {
    ScalarValue::Date32(Some(day_number(date)))
}

impl ScalarUDFImpl for LocalDate {
    fn name(&self) -> &str {
        "local_date"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let tz: Tz = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))) => match name.parse() {
                Ok(tz) => tz,
                Err(_) => return exec_err!("local_date: `{name}` is not an IANA timezone"),
            },
            _ => return exec_err!("local_date: the timezone must be a constant string"),
        };
        match &args.args[0] {
            ColumnarValue::Array(array) => {
                let ts = array
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .expect("signature guarantees Timestamp(µs)");
                let days: Date32Array = ts
                    .iter()
                    .map(|v| v.map(|m| local_day_number(m, tz)))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(days)))
            }
            ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(v, _)) => Ok(
                ColumnarValue::Scalar(ScalarValue::Date32(v.map(|m| local_day_number(m, tz)))),
            ),
            other => exec_err!("local_date: unexpected argument {other:?}"),
        }
    }
}

/// Cohort period length (SPEC §4.5 `cohort_grain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Month,
    Week,
}

impl Grain {
    fn parse(arg: &ColumnarValue, function: &str) -> Result<Grain> {
        match arg {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(g))) if g == "month" => Ok(Grain::Month),
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(g))) if g == "week" => Ok(Grain::Week),
            other => {
                exec_err!("{function}: grain must be the constant 'month' or 'week', got {other:?}")
            }
        }
    }

    /// A running number of the period containing day number `day` (days since 1970-01-01);
    /// `None` beyond chrono's calendar.
    pub fn index(self, day: i32) -> Option<i64> {
        match self {
            Grain::Month => {
                let date = epoch().checked_add_signed(chrono::Duration::days(day as i64))?;
                Some(date.year() as i64 * 12 + date.month0() as i64)
            }
            // 1970-01-01 was a Thursday: shifting by 3 makes weeks start on Monday (ISO).
            Grain::Week => Some((day as i64 + 3).div_euclid(7)),
        }
    }

    /// Day number of the first day of period `index`; `None` beyond Date32 or chrono.
    pub fn start(self, index: i64) -> Option<i32> {
        match self {
            Grain::Month => {
                let first = NaiveDate::from_ymd_opt(
                    i32::try_from(index.div_euclid(12)).ok()?,
                    index.rem_euclid(12) as u32 + 1,
                    1,
                )?;
                i32::try_from((first - epoch()).num_days()).ok()
            }
            Grain::Week => i32::try_from(index * 7 - 3).ok(),
        }
    }

    /// [`Grain::index`], or an error naming the day.
    fn index_of(self, day: i32, function: &str) -> Result<i64> {
        match self.index(day) {
            Some(i) => Ok(i),
            None => exec_err!("{function}: day {day} (days since 1970-01-01) is outside the supported range of dates"),
        }
    }
}

pub fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")
}

/// The Date32 values of argument `i` (an array, or a scalar repeated `rows` times).
fn dates(args: &ScalarFunctionArgs, i: usize, function: &str) -> Result<Date32Array> {
    match &args.args[i] {
        ColumnarValue::Array(a) => match a.as_any().downcast_ref::<Date32Array>() {
            Some(d) => Ok(d.clone()),
            None => exec_err!("{function}: argument {} must be a DATE", i + 1),
        },
        ColumnarValue::Scalar(ScalarValue::Date32(v)) => {
            Ok(Date32Array::from(vec![*v; args.number_rows]))
        }
        other => exec_err!(
            "{function}: argument {} must be a DATE, got {other:?}",
            i + 1
        ),
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PeriodStart {
    signature: Signature,
}

/// The `period_start(day, grain)` UDF.
pub fn period_start_udf() -> ScalarUDF {
    ScalarUDF::from(PeriodStart {
        signature: Signature::new(
            TypeSignature::Exact(vec![DataType::Date32, DataType::Utf8]),
            Volatility::Immutable,
        ),
    })
}

impl ScalarUDFImpl for PeriodStart {
    fn name(&self) -> &str {
        "period_start"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let grain = Grain::parse(&args.args[1], "period_start")?;
        let days = dates(&args, 0, "period_start")?;
        let out: Date32Array = days
            .iter()
            .map(|d| {
                d.map(|d| match grain.start(grain.index_of(d, "period_start")?) {
                    Some(start) => Ok(start),
                    None => exec_err!("period_start: day {d} (days since 1970-01-01) is outside the supported range of dates"),
                })
                .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PeriodsBetween {
    signature: Signature,
}

/// The `periods_between(start, later, grain)` UDF.
pub fn periods_between_udf() -> ScalarUDF {
    ScalarUDF::from(PeriodsBetween {
        signature: Signature::new(
            TypeSignature::Exact(vec![DataType::Date32, DataType::Date32, DataType::Utf8]),
            Volatility::Immutable,
        ),
    })
}

impl ScalarUDFImpl for PeriodsBetween {
    fn name(&self) -> &str {
        "periods_between"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let grain = Grain::parse(&args.args[2], "periods_between")?;
        let (start, later) = (
            dates(&args, 0, "periods_between")?,
            dates(&args, 1, "periods_between")?,
        );
        let out: Int64Array = start
            .iter()
            .zip(later.iter())
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => Ok(Some(
                    grain.index_of(b, "periods_between")? - grain.index_of(a, "periods_between")?,
                )),
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DaysBetween {
    signature: Signature,
}

/// The `days_between(start, later)` UDF.
pub fn days_between_udf() -> ScalarUDF {
    ScalarUDF::from(DaysBetween {
        signature: Signature::new(
            TypeSignature::Exact(vec![DataType::Date32, DataType::Date32]),
            Volatility::Immutable,
        ),
    })
}

impl ScalarUDFImpl for DaysBetween {
    fn name(&self) -> &str {
        "days_between"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (start, later) = (
            dates(&args, 0, "days_between")?,
            dates(&args, 1, "days_between")?,
        );
        let out: Int64Array = start
            .iter()
            .zip(later.iter())
            .map(|(a, b)| Some(b? as i64 - a? as i64))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct EpochUs {
    signature: Signature,
}

/// The `epoch_us(ts)` UDF: µs since the epoch of a `Timestamp(µs, UTC)`.
pub fn epoch_us_udf() -> ScalarUDF {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    ScalarUDF::from(EpochUs {
        signature: Signature::new(TypeSignature::Exact(vec![ts]), Volatility::Immutable),
    })
}

impl ScalarUDFImpl for EpochUs {
    fn name(&self) -> &str {
        "epoch_us"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Array(array) => {
                let ts = array
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .expect("signature guarantees Timestamp(µs)");
                let out: Int64Array = ts.iter().collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(v, _)) => {
                Ok(ColumnarValue::Scalar(ScalarValue::Int64(*v)))
            }
            other => exec_err!("epoch_us: unexpected argument {other:?}"),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FromEpochUs {
    signature: Signature,
}

/// The `from_epoch_us(n)` UDF: the `Timestamp(µs, UTC)` n µs after the epoch.
pub fn from_epoch_us_udf() -> ScalarUDF {
    ScalarUDF::from(FromEpochUs {
        signature: Signature::new(
            TypeSignature::Exact(vec![DataType::Int64]),
            Volatility::Immutable,
        ),
    })
}

impl ScalarUDFImpl for FromEpochUs {
    fn name(&self) -> &str {
        "from_epoch_us"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        ))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Array(array) => {
                let n = array
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("signature guarantees Int64");
                let out: TimestampMicrosecondArray = n.iter().collect();
                Ok(ColumnarValue::Array(Arc::new(out.with_timezone("UTC"))))
            }
            ColumnarValue::Scalar(ScalarValue::Int64(v)) => Ok(ColumnarValue::Scalar(
                ScalarValue::TimestampMicrosecond(*v, Some("UTC".into())),
            )),
            other => exec_err!("from_epoch_us: unexpected argument {other:?}"),
        }
    }
}

/// Every UDF the models use: the local engine, Ballista sessions, schedulers and executors
/// all register this list.
/// The aggregate functions: `min_by_keys`, `max_by_keys`.
pub fn aggregates() -> Vec<datafusion::logical_expr::AggregateUDF> {
    super::by_keys::aggregates()
}

pub fn all() -> Vec<ScalarUDF> {
    vec![
        local_date_udf(),
        period_start_udf(),
        periods_between_udf(),
        days_between_udf(),
        epoch_us_udf(),
        from_epoch_us_udf(),
        super::terms::post_terms_udf(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_timestamp;

    fn day(ts: &str, tz: Tz) -> NaiveDate {
        NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
            + chrono::Duration::days(local_day_number(parse_timestamp(ts).unwrap(), tz) as i64)
    }

    fn num(s: &str) -> i32 {
        (s.parse::<NaiveDate>().unwrap() - epoch()).num_days() as i32
    }

    #[test]
    fn periods_start_on_the_first_and_on_monday() {
        assert_eq!(
            Grain::Month.start(Grain::Month.index(num("2026-02-28")).unwrap()),
            Some(num("2026-02-01"))
        );
        assert_eq!(
            Grain::Month.index(num("2027-01-03")).unwrap()
                - Grain::Month.index(num("2026-11-30")).unwrap(),
            2
        );
        // 2026-11-23 is a Monday, 2026-11-29 a Sunday.
        assert_eq!(
            Grain::Week.start(Grain::Week.index(num("2026-11-29")).unwrap()),
            Some(num("2026-11-23"))
        );
        assert_eq!(
            Grain::Week.start(Grain::Week.index(num("2026-11-23")).unwrap()),
            Some(num("2026-11-23"))
        );
        assert_eq!(
            Grain::Week.start(Grain::Week.index(num("2026-11-22")).unwrap()),
            Some(num("2026-11-16"))
        );
        assert_eq!(
            Grain::Week.start(Grain::Week.index(num("1969-12-29")).unwrap()),
            Some(num("1969-12-29"))
        );
        assert_eq!(
            Grain::Week.index(num("2026-12-07")).unwrap()
                - Grain::Week.index(num("2026-11-29")).unwrap(),
            2
        );
    }

    /// Dates at the ends of Date32 (±5.8 million years) are beyond chrono's calendar: the
    /// functions answer an error, not a panic.
    #[tokio::test]
    async fn extreme_dates_are_errors_not_panics() {
        let ctx = datafusion::prelude::SessionContext::new();
        for udf in all() {
            ctx.register_udf(udf);
        }
        for day in [i32::MAX, i32::MIN, 2_000_000_000, -2_000_000_000] {
            for grain in ["month", "week"] {
                for sql in [
                    format!("SELECT period_start(arrow_cast({day}, 'Date32'), '{grain}')"),
                    format!("SELECT periods_between(DATE '2026-01-01', arrow_cast({day}, 'Date32'), '{grain}')"),
                    format!("SELECT period_start(d, '{grain}') FROM (VALUES (arrow_cast({day}, 'Date32'))) AS t(d)"),
                ] {
                    let result = match ctx.sql(&sql).await {
                        Ok(df) => df.collect().await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = result {
                        assert!(e.to_string().contains("outside"), "{sql}: {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn local_days_follow_the_zone() {
        use chrono_tz::{America::New_York, Asia::Shanghai};
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        // 23:59:59 UTC on the 22nd is already the 23rd in Shanghai (+08:00).
        assert_eq!(day("2026-11-22T15:59:59Z", Shanghai), d("2026-11-22"));
        assert_eq!(day("2026-11-22T16:00:00Z", Shanghai), d("2026-11-23"));
        // New York: EDT (−04:00) before 2026-11-01 02:00 local, EST (−05:00) after.
        assert_eq!(day("2026-11-01T03:59:59Z", New_York), d("2026-10-31"));
        assert_eq!(day("2026-11-01T04:00:00Z", New_York), d("2026-11-01"));
        assert_eq!(day("2026-11-02T04:59:59Z", New_York), d("2026-11-01"));
        assert_eq!(day("2026-11-02T05:00:00Z", New_York), d("2026-11-02"));
    }
}
