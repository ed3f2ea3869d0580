//! Paid membership (SPEC §4.9) and check-in streaks (§4.10), against hand-computed values at
//! every edge the SPEC names.
//!
//! Unless a test says otherwise: window_days = 10, as_of = 2026-11-11 in UTC, so
//! W = [2026-11-01, 2026-11-11) and W′ = [2026-10-22, 2026-11-01) as instants; term_days = 30,
//! grace_days = 7.

use std::collections::HashMap;

use crate::common::{approx, e, Scratch, E};

const CONFIG: &str = "[defaults]\nwindow_days = 10\n\
    membership = { term_days = 30, grace_days = 7, product_terms = { \"week\" = 7, \"year\" = 365 } }\n";

/// A purchase or refund of `product` (None: no content_id), of CNY 1.00 (`money` changes it:
/// import requires an amount and a currency on both).
fn pay(member: &str, kind: &str, at: &str, product: Option<&str>) -> E {
    let ev = e(member, kind, at)
        .set("amount_minor", 100)
        .set("currency", "CNY");
    match product {
        Some(p) => ev.set("content_id", p),
        None => ev,
    }
}

fn money(ev: E, amount: Option<i64>, currency: Option<&str>) -> E {
    let ev = match amount {
        Some(a) => ev.set("amount_minor", a),
        None => ev,
    };
    match currency {
        Some(c) => ev.set("currency", c),
        None => ev,
    }
}

/// The `membership` rows by member_id.
fn membership(s: &Scratch) -> HashMap<String, HashMap<String, String>> {
    s.records("SELECT * FROM membership")
        .into_iter()
        .map(|r| (r["member_id"].clone(), r))
        .collect()
}

/// The `kpis` rows: metric → (value, prev_value).
fn kpis(s: &Scratch) -> HashMap<String, (String, String)> {
    s.records("SELECT metric, value, prev_value FROM kpis")
        .into_iter()
        .map(|r| {
            (
                r["metric"].clone(),
                (r["value"].clone(), r["prev_value"].clone()),
            )
        })
        .collect()
}

#[test]
fn refunds_cancel_the_latest_matching_purchase() {
    let s = Scratch::new();
    s.config(CONFIG);
    let x = Some("x");
    s.import(&[
        // r1: the refund cancels B (the latest start ≤ the refund), not A.
        pay("r1", "purchase", "2026-09-01T00:00:00Z", x),
        pay("r1", "purchase", "2026-10-01T00:00:00Z", x),
        pay("r1", "refund", "2026-10-05T00:00:00Z", x),
        // r2: two purchases at the same instant, one refund: exactly one is cancelled.
        pay("r2", "purchase", "2026-11-01T00:00:00Z", x).set("received_at", "2026-11-01T00:00:01Z"),
        pay("r2", "purchase", "2026-11-01T00:00:00Z", x).set("received_at", "2026-11-01T00:00:02Z"),
        pay("r2", "refund", "2026-11-02T00:00:00Z", x),
        // r3: a refund at the very instant of a purchase cancels that purchase (start ≤ refund).
        pay("r3", "purchase", "2026-10-20T00:00:00Z", x),
        pay("r3", "purchase", "2026-11-05T00:00:00Z", x),
        pay("r3", "refund", "2026-11-05T00:00:00Z", x),
        // r4: a refund without content_id cancels the purchase without one (null matches null),
        // not the later purchase of "x".
        pay("r4", "purchase", "2026-11-01T00:00:00Z", None),
        pay("r4", "purchase", "2026-11-02T00:00:00Z", x),
        pay("r4", "refund", "2026-11-03T00:00:00Z", None),
        // r5: a refund before any purchase and one of another product match nothing.
        pay("r5", "refund", "2026-10-01T00:00:00Z", Some("y")),
        pay("r5", "purchase", "2026-10-02T00:00:00Z", Some("y")),
        pay("r5", "refund", "2026-10-10T00:00:00Z", Some("z")),
        // r6: the one purchase is refunded: it buys nothing.
        pay("r6", "purchase", "2026-10-25T00:00:00Z", x),
        pay("r6", "refund", "2026-10-26T00:00:00Z", x),
        // r7: only a refund: no purchase, no row.
        pay("r7", "refund", "2026-10-26T00:00:00Z", x),
        // r8: two refunds, two purchases in between: the second refund takes the earlier
        // purchase once the later one is cancelled.
        pay("r8", "purchase", "2026-09-01T00:00:00Z", x),
        pay("r8", "purchase", "2026-09-02T00:00:00Z", x),
        pay("r8", "refund", "2026-09-03T00:00:00Z", x),
        pay("r8", "refund", "2026-09-04T00:00:00Z", x),
        pay("r8", "purchase", "2026-11-03T00:00:00Z", x),
    ]);
    s.compute("2026-11-11");
    let m = membership(&s);
    assert_eq!(m.len(), 7, "{m:?}");
    assert!(!m.contains_key("r7"));
    let row = |id: &str| {
        let r = &m[id];
        [
            "status",
            "paid_until",
            "days_left",
            "first_paid_at",
            "spell_start",
            "spells",
            "purchases",
            "refunds",
        ]
        .map(|c| r[c].as_str())
    };
    // r1: only A [09-01, 10-01) remains; 10-01 + 7 days < as_of.
    assert_eq!(
        row("r1"),
        [
            "lapsed",
            "2026-10-01T00:00:00Z",
            "",
            "2026-09-01T00:00:00Z",
            "2026-09-01T00:00:00Z",
            "1",
            "1",
            "1"
        ]
    );
    assert_eq!(
        row("r2"),
        [
            "paying",
            "2026-12-01T00:00:00Z",
            "20",
            "2026-11-01T00:00:00Z",
            "2026-11-01T00:00:00Z",
            "1",
            "1",
            "1"
        ]
    );
    // r3: the 10-20 purchase remains, [10-20, 11-19): 8 whole days left.
    assert_eq!(
        row("r3"),
        [
            "paying",
            "2026-11-19T00:00:00Z",
            "8",
            "2026-10-20T00:00:00Z",
            "2026-10-20T00:00:00Z",
            "1",
            "1",
            "1"
        ]
    );
    assert_eq!(
        row("r4"),
        [
            "paying",
            "2026-12-02T00:00:00Z",
            "21",
            "2026-11-02T00:00:00Z",
            "2026-11-02T00:00:00Z",
            "1",
            "1",
            "1"
        ]
    );
    assert_eq!(
        row("r5"),
        [
            "lapsed",
            "2026-11-01T00:00:00Z",
            "",
            "2026-10-02T00:00:00Z",
            "2026-10-02T00:00:00Z",
            "1",
            "1",
            "2"
        ]
    );
    assert_eq!(row("r6"), ["refunded", "", "", "", "", "0", "0", "1"]);
    assert_eq!(
        row("r8"),
        [
            "paying",
            "2026-12-03T00:00:00Z",
            "22",
            "2026-11-03T00:00:00Z",
            "2026-11-03T00:00:00Z",
            "1",
            "1",
            "2"
        ]
    );
    // tier, active_days and last_active_at come from member_activity: payments are not active.
    assert_eq!(
        (
            m["r1"]["tier"].as_str(),
            m["r1"]["active_days"].as_str(),
            m["r1"]["last_active_at"].as_str()
        ),
        ("dormant", "0", "")
    );
}

#[test]
fn spells_merge_at_end_plus_grace_and_statuses_change_at_their_instants() {
    let s = Scratch::new();
    s.config(CONFIG);
    let x = Some("x");
    s.import(&[
        // m1: the second purchase starts exactly at end + grace: one spell to 11-07.
        pay("m1", "purchase", "2026-09-01T00:00:00Z", x),
        pay("m1", "purchase", "2026-10-08T00:00:00Z", x),
        e("m1", "post", "2026-11-03T10:00:00Z"),
        // m2: 1 µs later: a new spell.
        pay("m2", "purchase", "2026-09-01T00:00:00Z", x),
        pay("m2", "purchase", "2026-10-08T00:00:00.000001Z", x),
        // m3: paid until 1 µs after as_of: paying, 0 days left.
        pay("m3", "purchase", "2026-10-12T00:00:00.000001Z", x),
        // m4: paid until exactly as_of: grace.
        pay("m4", "purchase", "2026-10-12T00:00:00Z", x),
        // m5: grace ends 1 µs after as_of: still grace.
        pay("m5", "purchase", "2026-10-05T00:00:00.000001Z", x),
        // m6: grace ends exactly at as_of: lapsed.
        pay("m6", "purchase", "2026-10-05T00:00:00Z", x),
        // m7: 24.5 days left: 24.
        pay("m7", "purchase", "2026-11-05T12:00:00Z", x),
        // m8: product terms: a week, then a year (merged: 10-27 + 7 ≥ 11-01).
        pay("m8", "purchase", "2026-10-20T00:00:00Z", Some("week")),
        pay("m8", "purchase", "2026-11-01T00:00:00Z", Some("year")),
        // m9: a year bought inside a month: the spell ends with the year.
        pay("m9", "purchase", "2026-11-02T00:00:00Z", Some("year")),
        pay("m9", "purchase", "2026-11-03T00:00:00Z", x),
    ]);
    s.compute("2026-11-11");
    let m = membership(&s);
    let get = |id: &str, c: &str| m[id][c].clone();
    assert_eq!(get("m1", "spells"), "1");
    assert_eq!(get("m1", "paid_until"), "2026-11-07T00:00:00Z");
    assert_eq!(get("m1", "status"), "grace");
    assert_eq!(get("m1", "tier"), "regular");
    assert_eq!(get("m1", "active_days"), "1");
    assert_eq!(get("m1", "last_active_at"), "2026-11-03T10:00:00Z");
    assert_eq!(get("m2", "spells"), "2");
    assert_eq!(get("m2", "first_paid_at"), "2026-09-01T00:00:00Z");
    assert_eq!(get("m2", "spell_start"), "2026-10-08T00:00:00.000001Z");
    assert_eq!(get("m2", "paid_until"), "2026-11-07T00:00:00.000001Z");
    assert_eq!(get("m2", "purchases"), "2");
    assert_eq!(
        (get("m3", "status"), get("m3", "days_left")),
        ("paying".into(), "0".into())
    );
    assert_eq!(
        (get("m4", "status"), get("m4", "days_left")),
        ("grace".into(), String::new())
    );
    assert_eq!(get("m5", "status"), "grace");
    assert_eq!(get("m6", "status"), "lapsed");
    assert_eq!(get("m7", "days_left"), "24");
    assert_eq!(get("m8", "spells"), "1");
    assert_eq!(get("m8", "paid_until"), "2027-11-01T00:00:00Z");
    assert_eq!(get("m9", "paid_until"), "2027-11-02T00:00:00Z");
    assert_eq!(get("m9", "days_left"), "356");
}

#[test]
fn renewal_and_refund_kpis_at_the_window_edges() {
    let s = Scratch::new();
    s.config(CONFIG);
    let x = Some("x");
    s.import(&[
        // a: decided at 10-22 00:00 (W′'s first instant), renewed early (10-10, before it ends).
        pay("a", "purchase", "2026-09-15T00:00:00Z", x),
        pay("a", "purchase", "2026-10-10T00:00:00Z", x),
        // b: decided at 11-01 00:00 (W's first instant); the next purchase 1 µs after
        // end + grace is no renewal.
        pay("b", "purchase", "2026-09-25T00:00:00Z", x),
        pay("b", "purchase", "2026-11-01T00:00:00.000001Z", x),
        // c: a week, decided exactly at as_of: in neither window.
        pay("c", "purchase", "2026-10-28T00:00:00Z", Some("week")),
        // d: a week, renewed exactly at end + grace by a year.
        pay("d", "purchase", "2026-10-20T12:00:00Z", Some("week")),
        pay("d", "purchase", "2026-11-03T12:00:00Z", Some("year")),
        // e: refunded: never due.
        pay("e", "purchase", "2026-09-26T00:00:00Z", x),
        pay("e", "refund", "2026-09-27T00:00:00Z", x),
        // f: bought and refunded in W.
        pay("f", "purchase", "2026-11-02T00:00:00Z", x),
        pay("f", "refund", "2026-11-03T00:00:00Z", x),
        // g: a refund matching nothing, in W′.
        pay("g", "refund", "2026-10-25T00:00:00Z", Some("zzz")),
        // h: a new payer in W.
        pay("h", "purchase", "2026-11-05T00:00:00Z", x),
        // i: paying at W's start (the refund comes later), refunded at as_of.
        pay("i", "purchase", "2026-10-25T00:00:00Z", x),
        pay("i", "refund", "2026-11-05T00:00:00Z", x),
    ]);
    s.compute("2026-11-11");
    let k = kpis(&s);
    let kpi = |m: &str| {
        k.get(m)
            .unwrap_or_else(|| panic!("no kpi {m}: {k:?}"))
            .clone()
    };
    let both = |m: &str, v: f64, p: f64| {
        let (value, prev) = kpi(m);
        assert!(
            approx(&value, v) && approx(&prev, p),
            "{m}: ({value}, {prev}), expected ({v}, {p})"
        );
    };
    // as_of: b (new spell), d (merged with the year) and h pay; a and c are in grace/lapsed.
    // W's start: a (to 11-09), c (to 11-04) and i (refund not yet made).
    both("paid_members", 3.0, 3.0);
    both("new_payers", 1.0, 1.0); // h; c (d's first purchase is before W′)
    both("renewals_due", 2.0, 1.0); // b, d; a
    both("renewals", 1.0, 1.0); // d; a
    both("renewal_rate", 0.5, 1.0);
    both("refunds", 2.0, 1.0); // f, i; g
    both("refund_rate", 0.5, 0.5); // 2 / (b, d, f, h); 1 / (c, i)
    let m = membership(&s);
    assert_eq!(m["a"]["status"], "grace");
    assert_eq!(m["b"]["spells"], "2");
    assert_eq!(m["c"]["status"], "lapsed");
    assert_eq!(m["d"]["spells"], "1");
    assert_eq!(m["i"]["status"], "refunded");
    assert!(!m.contains_key("g"));
}

#[test]
fn members_at_the_start_of_w_follow_joins_leaves_and_bans_on_both_sides_of_it() {
    let s = Scratch::new();
    s.config("[defaults]\nwindow_days = 10\n");
    let joined = |m: &str| e(m, "join", "2026-10-01T10:00:00Z");
    s.import(&[
        joined("p"), // stays: a member at both dates
        joined("q"),
        e("q", "leave", "2026-10-20T10:00:00Z"), // left before W: at neither
        joined("r"),
        e("r", "leave", "2026-11-03T10:00:00Z"), // left in W: only at W's start
        joined("t"),
        e("t", "leave", "2026-10-15T10:00:00Z"),
        e("t", "join", "2026-11-04T10:00:00Z"), // back in W: only at as_of
        joined("u"),
        e("u", "ban", "2026-10-10T10:00:00Z"),
        e("u", "unban", "2026-11-05T10:00:00Z"), // unbanned in W: only at as_of
        joined("v"),
        e("v", "ban", "2026-11-06T10:00:00Z"), // banned in W: only at W's start
        e("x", "join", "2026-11-02T10:00:00Z"), // first seen in W: only at as_of
    ]);
    s.compute("2026-11-11");
    let (value, prev) = kpis(&s)["members"].clone();
    // as_of: p, t, u, x. W's start (2026-11-01): p, r, v.
    assert!(
        approx(&value, 4.0) && approx(&prev, 3.0),
        "members: ({value}, {prev})"
    );
}

#[test]
fn kpi_ratios_are_null_without_a_denominator() {
    let s = Scratch::new();
    s.config(CONFIG);
    s.import(&[e("m", "post", "2026-11-02T10:00:00Z")]);
    s.compute("2026-11-11");
    let k = kpis(&s);
    for m in ["renewal_rate", "refund_rate"] {
        assert_eq!(k[m], (String::new(), String::new()), "{m}");
    }
    for m in [
        "paid_members",
        "new_payers",
        "renewals_due",
        "renewals",
        "refunds",
    ] {
        assert!(
            approx(&k[m].0, 0.0) && approx(&k[m].1, 0.0),
            "{m}: {:?}",
            k[m]
        );
    }
    assert!(s.records("SELECT * FROM membership").is_empty());
    assert!(s.records("SELECT * FROM revenue_cohorts").is_empty());
}

#[test]
fn revenue_cohorts_by_currency_with_a_refund_in_a_later_period() {
    let s = Scratch::new();
    s.config(
        "[defaults]\nwindow_days = 10\n\
         membership = { term_days = 30, product_terms = { \"monthly\" = 30, \"year\" = 365 } }\n",
    );
    let buy =
        |m: &str, kind: &str, at: &str, product: &str, amount: Option<i64>, cur: Option<&str>| {
            money(pay(m, kind, at, Some(product)), amount, cur)
        };
    s.import(&[
        // Cohort September: q and r.
        buy(
            "q",
            "purchase",
            "2026-09-05T00:00:00Z",
            "year",
            Some(20000),
            Some("CNY"),
        ),
        buy(
            "q",
            "purchase",
            "2026-09-20T00:00:00Z",
            "addon",
            Some(1000),
            Some("USD"),
        ),
        buy(
            "q",
            "refund",
            "2026-10-03T00:00:00Z",
            "addon",
            Some(1000),
            Some("USD"),
        ),
        // r: [09-02, 10-02) and [10-02, 11-01): paying in September and October, not November.
        buy(
            "r",
            "purchase",
            "2026-09-02T00:00:00Z",
            "monthly",
            Some(10000),
            Some("CNY"),
        ),
        buy(
            "r",
            "purchase",
            "2026-10-02T00:00:00Z",
            "monthly",
            Some(10000),
            Some("CNY"),
        ),
        // Cohort October: s, t (free), u (USD money only before October: no USD row).
        buy(
            "s",
            "purchase",
            "2026-10-01T00:00:00Z",
            "x",
            Some(500),
            Some("CNY"),
        ),
        buy(
            "t",
            "purchase",
            "2026-10-05T00:00:00Z",
            "x",
            Some(0),
            Some("CNY"),
        ),
        buy(
            "u",
            "purchase",
            "2026-08-10T00:00:00Z",
            "x",
            Some(300),
            Some("USD"),
        ),
        buy(
            "u",
            "refund",
            "2026-08-11T00:00:00Z",
            "x",
            Some(300),
            Some("USD"),
        ),
        buy(
            "u",
            "purchase",
            "2026-10-20T00:00:00Z",
            "x",
            Some(700),
            Some("CNY"),
        ),
    ]);
    s.compute("2026-11-11");
    let rows: Vec<String> = s
        .records(
            "SELECT CAST(cohort_start AS VARCHAR) AS c, currency, period_offset AS k, cohort_size AS n, \
             paying, paying_rate, net_revenue_minor AS net, revenue_retention AS rr, is_partial AS p \
             FROM revenue_cohorts ORDER BY cohort_start, currency, period_offset",
        )
        .iter()
        .map(|r| {
            let f = |c: &str| match r[c].parse::<f64>() {
                Ok(v) => format!("{v:.4}"),
                Err(_) => r[c].clone(),
            };
            format!(
                "{} {} {} {} {} {} {} {} {}",
                r["c"], r["currency"], r["k"], r["n"], r["paying"], f("paying_rate"), r["net"], f("rr"), r["p"]
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "2026-09-01 CNY 0 2 2 1.0000 30000 1.0000 false",
            "2026-09-01 CNY 1 2 2 1.0000 10000 0.3333 false",
            "2026-09-01 CNY 2 2 1 0.5000 0 0.0000 true",
            "2026-09-01 USD 0 2 2 1.0000 1000 1.0000 false",
            "2026-09-01 USD 1 2 2 1.0000 -1000 -1.0000 false",
            "2026-09-01 USD 2 2 1 0.5000 0 0.0000 true",
            "2026-10-01 CNY 0 3 3 1.0000 1200 1.0000 false",
            "2026-10-01 CNY 1 3 2 0.6667 0 0.0000 true",
        ]
    );
}

#[test]
fn revenue_retention_is_null_without_period_zero_revenue() {
    let s = Scratch::new();
    s.config(CONFIG);
    s.import(&[
        money(
            pay("t", "purchase", "2026-10-05T00:00:00Z", Some("x")),
            Some(0),
            Some("CNY"),
        ),
        money(
            pay("t", "purchase", "2026-11-05T00:00:00Z", Some("x")),
            Some(900),
            Some("CNY"),
        ),
    ]);
    s.compute("2026-11-11");
    let rows = s.rows(
        "SELECT period_offset, net_revenue_minor, revenue_retention FROM revenue_cohorts ORDER BY period_offset",
    );
    assert_eq!(
        rows,
        [["0", "0", ""], ["1", "900", ""]].map(|r| r.map(String::from).to_vec())
    );
}

#[test]
fn checkin_streaks_count_local_days_ending_the_day_before_as_of() {
    let s = Scratch::new();
    // Check-ins count for streaks whether or not they are an active type.
    s.config(
        "[defaults]\nwindow_days = 10\ntimezone = \"Asia/Shanghai\"\nactive_event_types = [\"post\"]\n",
    );
    let mut ev = vec![
        // s1: local 11-08 00:30, 11-09 23:59:59, 11-10 00:00 (Shanghai, +08:00): three days
        // ending on D−1, though in UTC they fall on 11-07 and 11-09 only.
        e("s1", "checkin", "2026-11-07T16:30:00Z"),
        e("s1", "checkin", "2026-11-09T15:59:59Z"),
        e("s1", "checkin", "2026-11-09T16:00:00Z"),
        // s3: no check-ins.
        e("s3", "post", "2026-11-02T02:00:00Z"),
    ];
    // s1: an earlier run of five local days (noon in Shanghai).
    for d in 1..=5 {
        ev.push(e("s1", "checkin", &format!("2026-10-{d:02}T04:00:00Z")));
    }
    // s2: five days ending on 11-09, none on D−1; a check-in at 00:30 local on D is not seen.
    for d in 5..=9 {
        ev.push(e("s2", "checkin", &format!("2026-11-{d:02}T04:00:00Z")));
    }
    ev.push(e("s2", "checkin", "2026-11-10T16:30:00Z"));
    // s4: two check-ins on D−1 are one day.
    ev.push(e("s4", "checkin", "2026-11-10T01:00:00Z"));
    ev.push(e("s4", "checkin", "2026-11-10T02:00:00Z"));
    s.import(&ev);
    s.compute("2026-11-11");
    let streak = |m: &str| {
        let r = s.member("member_activity", m);
        (
            r["checkin_streak"].clone(),
            r["longest_checkin_streak"].clone(),
        )
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(streak("s1"), pair("3", "5"));
    assert_eq!(streak("s2"), pair("0", "5"));
    assert_eq!(streak("s3"), pair("0", "0"));
    assert_eq!(streak("s4"), pair("1", "1"));
}

/// Local noon of every day from `from` to `to` (Shanghai, +08:00), as UTC check-ins.
fn daily_checkins(member: &str, from: &str, to: &str) -> Vec<E> {
    let (from, to): (chrono::NaiveDate, chrono::NaiveDate) =
        (from.parse().unwrap(), to.parse().unwrap());
    from.iter_days()
        .take_while(|d| *d <= to)
        .map(|d| e(member, "checkin", &format!("{d}T04:00:00Z")))
        .collect()
}

#[test]
fn checkin_streaks_carry_across_months_and_late_events_recompute_the_carried_state() {
    let s = Scratch::new();
    s.config("[defaults]\nwindow_days = 10\ntimezone = \"Asia/Shanghai\"\n");
    let mut ev = Vec::new();
    // m1: every day from 08-30 to 12-02 = 2 + 30 + 31 + 30 + 2 = 95 days, through four month ends.
    ev.extend(daily_checkins("m1", "2026-08-30", "2026-12-02"));
    // m2: 40 days in July and August, then 10-29..11-02 (5 days, across the end of October).
    ev.extend(daily_checkins("m2", "2026-07-01", "2026-08-09"));
    ev.extend(daily_checkins("m2", "2026-10-29", "2026-11-02"));
    // m3: local 10-31 00:30 and 11-01 07:00 are UTC 10-30 and 10-31: the local day of November
    // lies in October's UTC partition. Then every day 11-02..12-02: 2 + 31 = 33 days.
    ev.push(e("m3", "checkin", "2026-10-30T16:30:00Z"));
    ev.push(e("m3", "checkin", "2026-10-31T23:00:00Z"));
    ev.extend(daily_checkins("m3", "2026-11-02", "2026-12-02"));
    // m4: 09-01..09-10 (10 days) and 09-12..09-20 (9 days): a gap on 09-11.
    ev.extend(daily_checkins("m4", "2026-09-01", "2026-09-10"));
    ev.extend(daily_checkins("m4", "2026-09-12", "2026-09-20"));
    s.import(&ev);
    let streaks = |as_of: &str| {
        s.compute(as_of);
        let rows = s.rows(&format!(
            "SELECT member_id, checkin_streak, longest_checkin_streak FROM member_activity \
             WHERE as_of = DATE '{as_of}' AND longest_checkin_streak > 0 ORDER BY member_id"
        ));
        rows.into_iter().map(|r| r.join(" ")).collect::<Vec<_>>()
    };
    // as_of 12-03: the state is carried through 10-31 and November and 12-01..02 are read.
    assert_eq!(
        streaks("2026-12-03"),
        ["m1 95 95", "m2 0 40", "m3 33 33", "m4 0 10"]
    );
    // as_of 11-15: carried through 09-30; m1 has 08-30..11-14 = 2 + 30 + 31 + 14 = 77 days.
    // m2's run had reached 10-29..11-02 = 5 days; m3 had 10-31, 11-01, 11-02..11-14 = 15.
    assert_eq!(
        streaks("2026-11-15"),
        ["m1 77 77", "m2 0 40", "m3 15 15", "m4 0 10"]
    );
    // A late check-in on 09-11 joins m4's two runs into 20 days; the stored state of September
    // (and every month after it) is recomputed, not reused.
    s.import(&[e("m4", "checkin", "2026-09-11T04:00:00Z")]);
    assert_eq!(
        streaks("2026-12-03"),
        ["m1 95 95", "m2 0 40", "m3 33 33", "m4 0 20"]
    );
    // The chain is stored one month a file, from the month before the first event's month
    // through the last month a run continued from (10-31 for as_of 12-03).
    let dir = s.lake().join("rollups/checkin_state/community_id=c1");
    let mut stored: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(['.', '_']))
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        ["06-01", "07-01", "08-01", "09-01", "10-01"].map(|m| format!("local_month=2026-{m}"))
    );
}

#[test]
fn membership_instants_and_cohorts_follow_the_community_timezone() {
    let s = Scratch::new();
    // Shanghai (+08:00): as_of 2026-11-11 starts at 2026-11-10T16:00:00Z; W at 10-31T16:00Z.
    s.config(&format!("{CONFIG}timezone = \"Asia/Shanghai\"\n"));
    let x = Some("x");
    s.import(&[
        // 10-01 00:30 local (still September in UTC): cohort October; paid until exactly
        // as_of's instant: grace.
        pay("a", "purchase", "2026-09-30T16:30:00Z", Some("week")),
        pay("a", "purchase", "2026-10-11T16:00:00Z", x),
        // Bought 1 µs before W's first instant: a new payer of W′, paying at W's start.
        pay("b", "purchase", "2026-10-31T15:59:59.999999Z", x),
        // Bought at W's first instant (11-01 00:00 local): a new payer of W, not paying at W's
        // start, cohort November.
        pay("c", "purchase", "2026-10-31T16:00:00Z", x),
    ]);
    s.compute("2026-11-11");
    let m = membership(&s);
    assert_eq!(m["a"]["status"], "grace");
    assert_eq!(m["a"]["paid_until"], "2026-11-10T16:00:00Z");
    assert_eq!(
        m["a"]["spells"], "1",
        "10-11 16:00 is within 10-07 16:30 + 7 days"
    );
    assert_eq!(m["b"]["days_left"], "19");
    assert_eq!(m["c"]["days_left"], "20");
    let k = kpis(&s);
    // as_of: b and c (a is in grace); W's start: a and b (c starts at that very instant).
    assert!(
        approx(&k["paid_members"].0, 2.0) && approx(&k["paid_members"].1, 2.0),
        "{k:?}"
    );
    assert!(
        approx(&k["new_payers"].0, 1.0) && approx(&k["new_payers"].1, 1.0),
        "{k:?}"
    );
    let cohorts = s.rows(
        "SELECT CAST(cohort_start AS VARCHAR) AS c, period_offset, cohort_size, paying \
         FROM revenue_cohorts ORDER BY cohort_start, period_offset",
    );
    assert_eq!(
        cohorts,
        [
            ["2026-10-01", "0", "2", "2"],
            ["2026-10-01", "1", "2", "2"],
            ["2026-11-01", "0", "1", "1"]
        ]
        .map(|r| r.map(String::from).to_vec())
    );
}

#[test]
fn the_report_lists_renewals_coming_up_and_streak_leaders() {
    let s = Scratch::new();
    // A community's `membership` overrides [defaults] key by key: term 30 and grace 7 stay.
    s.config(&format!(
        "{CONFIG}[[communities]]\nid = \"c1\"\nmembership = {{ horizon_days = 10 }}\n"
    ));
    let x = Some("x");
    let mut ev = vec![
        // 8 days left, active in W; 2 days left, not active in W; 20 days left: not listed.
        pay("soon", "purchase", "2026-10-20T00:00:00Z", x),
        e("soon", "post", "2026-11-05T10:00:00Z"),
        pay("sooner", "purchase", "2026-10-14T00:00:00Z", x),
        pay("later", "purchase", "2026-11-01T00:00:00Z", x),
    ];
    for d in 8..=10 {
        ev.push(e(
            "streaker",
            "checkin",
            &format!("2026-11-{d:02}T09:00:00Z"),
        ));
    }
    s.import(&ev);
    s.run("2026-11-11");
    let text = std::fs::read_to_string(s.path("lake/reports/c1/2026-11-11/report.txt")).unwrap();
    let coming = text
        .split("Renewals coming up (2)")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    let sooner = coming.find("- sooner: Days left 2").expect("sooner listed");
    let soon = coming.find("- soon: Days left 8").expect("soon listed");
    assert!(sooner < soon, "soonest first: {coming}");
    assert!(coming.contains("Days left 2, Paid until 13 Nov 2026 00:00 [not active in W]"));
    assert!(!coming[..coming.find("Revenue cohorts").unwrap()].contains("later"));
    assert!(text.contains("- Paid members: 3 (Previous 2)"), "{text}");
    assert!(
        text.contains("- streaker: Current streak 3d, Longest 3d"),
        "{text}"
    );
    let html = std::fs::read_to_string(s.path("lake/reports/c1/2026-11-11/report.html")).unwrap();
    assert!(html.contains("Renewals coming up") && html.contains("Revenue cohorts"));
}
