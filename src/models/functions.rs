//! SQL functions the models need and DataFusion lacks: the local calendar day of a UTC instant
//! in an IANA timezone (SPEC §3: "day" means a local calendar day in the community's zone).
//!
//! `local_date(ts, tz)` → Date32: `ts` is a `Timestamp(µs, UTC)`, `tz` an IANA name (a bound
//! parameter). DST is handled by chrono-tz, so a day is 23 or 25 hours long when it should be.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, Date32Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{exec_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
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
    let local = utc.with_timezone(&tz).date_naive();
    (local - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
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
                let days: Date32Array = ts.iter().map(|v| v.map(|m| local_day_number(m, tz))).collect();
                Ok(ColumnarValue::Array(Arc::new(days)))
            }
            ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(v, _)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Date32(v.map(|m| local_day_number(m, tz))),
            )),
            other => exec_err!("local_date: unexpected argument {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_timestamp;

    fn day(ts: &str, tz: Tz) -> NaiveDate {
        NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(local_day_number(parse_timestamp(ts).unwrap(), tz) as i64)
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
