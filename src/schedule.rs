//! The schedule, and only time: when runs are due, in each community's timezone. Pure
//! functions of a cron expression, a timezone, the run history and `now` (the clock is
//! injected, and tests move it); [`crate::serve`] acts on them.
//!
//! - [`fires_between`] evaluates a cron expression on the community's wall clock: a time that
//!   does not exist (a DST gap) fires once at the first instant after the gap, a time that
//!   happens twice (a DST repeat) fires once, at its first occurrence.
//! - [`plan`] decides which as_of dates are due at `now` from the history: fires since the last
//!   successful one, oldest first, at most `report.catch_up` of them (the most recent), each
//!   retried on later ticks until it succeeds or has failed `report.max_attempts` times, so a
//!   failing day never blocks the days after it. Fires before the community was first
//!   scheduled are not due (a new install does not replay the past).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::CommunitySettings;
use crate::pipeline::history::{RunKind, RunRecord, RunStatus};

/// The instant a local wall-clock time means in `tz`: itself; the first of two in a DST repeat;
/// the first instant after a DST gap.
fn instant_of(wall: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    (0..=180)
        .find_map(|minutes| {
            tz.from_local_datetime(&(wall + Duration::minutes(minutes)))
                .earliest()
        })
        .expect("a DST gap is shorter than three hours")
        .with_timezone(&Utc)
}

/// Every instant in `(after, until]` at which `cron`, read on the wall clock of `tz`, fires.
pub fn fires_between(
    cron: &cron::Schedule,
    tz: Tz,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    // Walk the wall clock (as if it were UTC) from a little before `after`, so a repeated hour
    // or a gap just before it is seen, and map each wall time to its instant.
    let start_wall = after.with_timezone(&tz).naive_local() - Duration::hours(3);
    let mut fires: Vec<DateTime<Utc>> = Vec::new();
    for wall in cron.after(&Utc.from_utc_datetime(&start_wall)) {
        let instant = instant_of(wall.naive_utc(), tz);
        if instant > until {
            // Wall time and instants are monotonic up to a DST shift of a few hours.
            if instant > until + Duration::hours(3) {
                break;
            }
            continue;
        }
        if instant > after && fires.last() != Some(&instant) {
            fires.push(instant);
        }
    }
    fires.sort();
    fires.dedup();
    fires
}

/// The next fire after `after`, if the expression ever fires again (within ten years).
pub fn next_fire(cron: &cron::Schedule, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut from = after;
    for _ in 0..40 {
        let until = from + Duration::days(92);
        if let Some(first) = fires_between(cron, tz, from, until).first() {
            return Some(*first);
        }
        from = until;
    }
    None
}

/// The as_of of a run fired at `at`: the community's local date then (the run covers the days
/// before it).
pub fn as_of_for(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// A run that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub community: String,
    pub as_of: NaiveDate,
    pub due_at: DateTime<Utc>,
    /// Due before the latest fire (a catch-up after downtime): the report says it is late.
    pub late: bool,
}

/// Scheduling limits (from `[report]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// At most this many missed fires are run after downtime (the most recent ones).
    pub catch_up: usize,
    /// A fire that failed this many times is given up.
    pub max_attempts: usize,
}

/// The runs due at `now` for one community, oldest first.
pub fn plan(
    cron: &cron::Schedule,
    settings: &CommunitySettings,
    runs: &[RunRecord],
    now: DateTime<Utc>,
    limits: Limits,
) -> Vec<Due> {
    let mine: Vec<&RunRecord> = runs.iter().filter(|r| r.community == settings.id).collect();
    let Some(registered) = mine
        .iter()
        .filter(|r| r.kind == RunKind::Registered)
        .map(|r| r.started_at)
        .min()
    else {
        return Vec::new();
    };
    let done = |at: DateTime<Utc>| {
        let attempts: Vec<&&RunRecord> = mine
            .iter()
            .filter(|r| r.kind == RunKind::Scheduled && r.due_at == Some(at))
            .collect();
        attempts.iter().any(|r| r.status == RunStatus::Succeeded)
            || attempts
                .iter()
                .filter(|r| matches!(r.status, RunStatus::Failed | RunStatus::Abandoned))
                .count()
                >= limits.max_attempts
    };
    let fires = fires_between(cron, settings.timezone, registered, now);
    let latest = fires.last().copied();
    // One run per as_of: the latest fire of each local date.
    let mut by_day: BTreeMap<NaiveDate, DateTime<Utc>> = BTreeMap::new();
    for at in fires {
        by_day.insert(as_of_for(at, settings.timezone), at);
    }
    let mut due: Vec<Due> = by_day
        .into_iter()
        .filter(|(_, at)| !done(*at))
        .map(|(as_of, at)| Due {
            community: settings.id.clone(),
            as_of,
            due_at: at,
            late: Some(at) != latest,
        })
        .collect();
    if due.len() > limits.catch_up {
        due.drain(..due.len() - limits.catch_up);
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse_cron(text: &str) -> cron::Schedule {
        text.parse().expect("a cron expression with seconds")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn settings(tz: &str) -> CommunitySettings {
        let mut s = Config::default_config().community("c1");
        s.timezone = tz.parse().unwrap();
        s
    }

    fn registered(at: &str) -> RunRecord {
        RunRecord {
            run_id: "registered-c1".into(),
            kind: RunKind::Registered,
            community: "c1".into(),
            as_of: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            due_at: None,
            job: None,
            status: RunStatus::Succeeded,
            late: false,
            started_at: utc(at),
            finished_at: None,
            stages: Vec::new(),
            error: None,
        }
    }

    const LIMITS: Limits = Limits {
        catch_up: 4,
        max_attempts: 3,
    };

    #[test]
    fn monday_nine_is_nine_in_each_community() {
        let cron = parse_cron("0 0 9 * * Mon");
        let after = utc("2026-11-20T00:00:00Z");
        let until = utc("2026-11-25T00:00:00Z");
        let shanghai = fires_between(&cron, "Asia/Shanghai".parse().unwrap(), after, until);
        assert_eq!(shanghai, [utc("2026-11-23T01:00:00Z")]);
        let new_york = fires_between(&cron, "America/New_York".parse().unwrap(), after, until);
        assert_eq!(new_york, [utc("2026-11-23T14:00:00Z")]);
        assert_eq!(
            as_of_for(shanghai[0], "Asia/Shanghai".parse().unwrap()),
            NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
        );
    }

    #[test]
    fn dst_gaps_and_repeats_fire_once() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2026-03-08 02:30 does not exist in New York (02:00 → 03:00): it fires at 03:00 EDT.
        let daily = parse_cron("0 30 2 * * *");
        let fires = fires_between(
            &daily,
            ny,
            utc("2026-03-07T12:00:00Z"),
            utc("2026-03-09T12:00:00Z"),
        );
        assert_eq!(
            fires,
            [utc("2026-03-08T07:00:00Z"), utc("2026-03-09T06:30:00Z")]
        );
        // 2026-11-01 01:30 happens twice (EDT, then EST): it fires once, at the first.
        let repeat = parse_cron("0 30 1 * * *");
        let fires = fires_between(
            &repeat,
            ny,
            utc("2026-10-31T12:00:00Z"),
            utc("2026-11-02T12:00:00Z"),
        );
        assert_eq!(
            fires,
            [utc("2026-11-01T05:30:00Z"), utc("2026-11-02T06:30:00Z")]
        );
        // Every 30 minutes through the repeated hour: 01:00, 01:30 once each, then 02:00 EST.
        let half_hourly = parse_cron("0 0/30 * * * *");
        let fires = fires_between(
            &half_hourly,
            ny,
            utc("2026-11-01T04:45:00Z"),
            utc("2026-11-01T07:15:00Z"),
        );
        assert_eq!(
            fires,
            [
                utc("2026-11-01T05:00:00Z"),
                utc("2026-11-01T05:30:00Z"),
                utc("2026-11-01T07:00:00Z")
            ]
        );
        // A zone without DST never skips or repeats.
        let sh = fires_between(
            &daily,
            "Asia/Shanghai".parse().unwrap(),
            utc("2026-03-07T00:00:00Z"),
            utc("2026-03-10T00:00:00Z"),
        );
        assert_eq!(sh.len(), 3);
    }

    #[test]
    fn nothing_is_due_before_registration_or_after_success() {
        let cron = parse_cron("0 0 9 * * *");
        let s = settings("UTC");
        let now = utc("2026-11-23T10:00:00Z");
        assert!(plan(&cron, &s, &[], now, LIMITS).is_empty());
        let runs = vec![registered("2026-11-23T08:00:00Z")];
        let due = plan(&cron, &s, &runs, now, LIMITS);
        assert_eq!(due.len(), 1);
        assert!(!due[0].late);
        let mut done = registered("2026-11-23T09:00:01Z");
        done.run_id = "r1".into();
        done.kind = RunKind::Scheduled;
        done.due_at = Some(due[0].due_at);
        let runs = vec![runs[0].clone(), done];
        assert!(plan(&cron, &s, &runs, now, LIMITS).is_empty());
    }

    #[test]
    fn catch_up_runs_missed_days_oldest_first_up_to_the_limit_marked_late() {
        let cron = parse_cron("0 0 9 * * *");
        let s = settings("Asia/Shanghai");
        let runs = vec![registered("2026-11-01T00:00:00Z")];
        // Down from the 1st to the 23rd 10:00 Shanghai: 23 fires missed, the last 4 are run.
        let due = plan(&cron, &s, &runs, utc("2026-11-23T02:00:00Z"), LIMITS);
        let days: Vec<String> = due.iter().map(|d| d.as_of.to_string()).collect();
        assert_eq!(
            days,
            ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]
        );
        assert_eq!(
            due.iter().map(|d| d.late).collect::<Vec<_>>(),
            [true, true, true, false]
        );
    }

    #[test]
    fn a_failing_day_is_retried_then_given_up() {
        let cron = parse_cron("0 0 9 * * *");
        let s = settings("UTC");
        let mut runs = vec![registered("2026-11-22T00:00:00Z")];
        let now = utc("2026-11-22T10:00:00Z");
        for attempt in 0..3 {
            let due = plan(&cron, &s, &runs, now, LIMITS);
            assert_eq!(due.len(), 1, "attempt {attempt}");
            let mut failed = registered("2026-11-22T09:00:00Z");
            failed.run_id = format!("f{attempt}");
            failed.kind = RunKind::Scheduled;
            failed.status = RunStatus::Failed;
            failed.due_at = Some(due[0].due_at);
            runs.push(failed);
        }
        assert!(plan(&cron, &s, &runs, now, LIMITS).is_empty());
        // The next day is due regardless.
        assert_eq!(
            plan(&cron, &s, &runs, utc("2026-11-23T10:00:00Z"), LIMITS).len(),
            1
        );
    }
}
