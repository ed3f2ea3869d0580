//! Rendering a [`ReportData`] into the report: the HTML and text templates of `reports/`
//! (minijinja), the labels of the community's locale (`reports/i18n/*.toml`) and the charts.
//!
//! The templates and labels are compiled into the binary; `report.templates` in the config
//! points at a directory with the same layout to use edited ones instead (`pulse report`
//! previews them). Numbers, dates and times are formatted by filters that know the locale and
//! the community's timezone, so templates never format by hand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use minijinja::value::{Kwargs, Value};
use minijinja::{context, Environment};

use super::charts;
use super::gather::ReportData;
use crate::config::Locale;
use crate::error::{Error, IoContext, Result};

const HTML: &str = include_str!("../../reports/report.html.j2");
const TEXT: &str = include_str!("../../reports/report.txt.j2");
const LABELS_EN: &str = include_str!("../../reports/i18n/en.toml");
const LABELS_ZH: &str = include_str!("../../reports/i18n/zh-CN.toml");

/// The report templates and labels, built in or read from a directory.
#[derive(Debug, Clone)]
pub struct Templates {
    html: String,
    text: String,
    en: BTreeMap<String, String>,
    zh: BTreeMap<String, String>,
    /// Where they came from, for error messages.
    origin: String,
}

impl Templates {
    pub fn built_in() -> Templates {
        Templates {
            html: HTML.into(),
            text: TEXT.into(),
            en: parse_labels(LABELS_EN, Path::new("reports/i18n/en.toml"))
                .expect("built-in labels"),
            zh: parse_labels(LABELS_ZH, Path::new("reports/i18n/zh-CN.toml"))
                .expect("built-in labels"),
            origin: "built-in reports/".into(),
        }
    }

    /// Templates from `dir` (`report.html.j2`, `report.txt.j2`, `i18n/en.toml`,
    /// `i18n/zh-CN.toml`); a file that is missing there is taken from the built-in set.
    pub fn from_dir(dir: &Path) -> Result<Templates> {
        let read = |name: &str, built_in: &str| -> Result<(String, PathBuf)> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok((text, path)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((
                    built_in.to_string(),
                    PathBuf::from(format!("built-in {name}")),
                )),
                Err(e) => Err(e).io_context(|| format!("reading {}", path.display())),
            }
        };
        let (en, en_path) = read("i18n/en.toml", LABELS_EN)?;
        let (zh, zh_path) = read("i18n/zh-CN.toml", LABELS_ZH)?;
        let templates = Templates {
            html: read("report.html.j2", HTML)?.0,
            text: read("report.txt.j2", TEXT)?.0,
            en: parse_labels(&en, &en_path)?,
            zh: parse_labels(&zh, &zh_path)?,
            origin: dir.display().to_string(),
        };
        // Compile now, so a syntax error is reported before anything is sent.
        let mut env = Environment::new();
        for (name, source) in [
            ("report.html.j2", &templates.html),
            ("report.txt.j2", &templates.text),
        ] {
            env.add_template(name, source)
                .map_err(|e| Error::Template {
                    template: format!("{}/{name}", templates.origin),
                    source: e,
                })?;
        }
        Ok(templates)
    }

    fn labels(&self, locale: Locale) -> &BTreeMap<String, String> {
        match locale {
            Locale::En => &self.en,
            Locale::ZhCn => &self.zh,
        }
    }
}

fn parse_labels(text: &str, path: &Path) -> Result<BTreeMap<String, String>> {
    toml::from_str(text).map_err(|e| Error::Config {
        file: path.to_path_buf(),
        key: String::new(),
        message: format!("report labels must be `key = \"text\"` lines: {e}"),
    })
}

/// One chart image of a report.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Name in the template (`img.<name>`).
    pub name: &'static str,
    pub file_name: String,
    pub png: Vec<u8>,
}

impl Chart {
    /// The Content-ID the email uses for it.
    pub fn content_id(&self, data: &ReportData) -> String {
        format!("{}.{}.{}@pulse", self.name, data.community_id, data.as_of)
    }
}

/// A rendered report.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    /// HTML whose images are the chart files beside it (what the lake keeps).
    pub html_files: String,
    /// HTML whose images are `cid:` references to inline parts (what the email carries).
    pub html_email: String,
    pub text: String,
    pub charts: Vec<Chart>,
}

/// Render `data` in `locale`; the chart PNGs are drawn into `dir` (and kept in memory).
pub fn render(
    data: &ReportData,
    locale: Locale,
    tz: Tz,
    templates: &Templates,
    dir: &Path,
) -> Result<Rendered> {
    std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    let labels = templates.labels(locale);
    let label = |key: &str| labels.get(key).cloned().unwrap_or_else(|| key.to_string());
    let format = Format {
        locale,
        tz,
        as_of_us: crate::models::local_midnight(data.as_of, tz),
    };

    let day_labels: Vec<String> = data
        .daily_active
        .iter()
        .map(|d| format.short_date(d.day))
        .collect();
    let values: Vec<i64> = data.daily_active.iter().map(|d| d.members).collect();
    let daily_path = dir.join("daily_active.png");
    charts::daily_line(
        &daily_path,
        &label("daily_active_chart"),
        (&label("previous_window"), &label("this_window")),
        &day_labels,
        &values,
        data.window_days as usize,
    )?;
    let tier_rows: Vec<(String, i64)> = data
        .tiers
        .iter()
        .filter(|t| t.members > 0)
        .map(|t| (label(&format!("tier_{}", t.tier)), t.members))
        .collect();
    let tiers_path = dir.join("tiers.png");
    charts::bars(&tiers_path, &label("tiers_chart"), &tier_rows)?;
    let charts = [("daily_active", daily_path), ("tiers", tiers_path)]
        .into_iter()
        .map(|(name, path)| {
            Ok(Chart {
                name,
                file_name: path.file_name().unwrap().to_string_lossy().into_owned(),
                png: std::fs::read(&path).io_context(|| format!("reading {}", path.display()))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let env = environment(templates, format)?;
    let base = context! {
        r => Value::from_serialize(data),
        t => Value::from_serialize(labels),
        lang => match locale { Locale::En => "en", Locale::ZhCn => "zh-CN" },
    };
    let subject = env
        .render_str(&label("subject"), base.clone())
        .map_err(|e| template_error(templates, "subject", e))?;
    let render_with = |name: &str, images: BTreeMap<&str, String>| {
        env.get_template(name)
            .and_then(|t| {
                t.render(context! { img => images, subject => subject.clone(), ..base.clone() })
            })
            .map_err(|e| template_error(templates, name, e))
    };
    let files = charts
        .iter()
        .map(|c| (c.name, c.file_name.clone()))
        .collect();
    let cids = charts
        .iter()
        .map(|c| (c.name, format!("cid:{}", c.content_id(data))))
        .collect();
    Ok(Rendered {
        html_files: render_with("report.html.j2", files)?,
        html_email: render_with("report.html.j2", cids)?,
        text: render_with("report.txt.j2", BTreeMap::new())?,
        subject,
        charts,
    })
}

fn template_error(templates: &Templates, name: &str, e: minijinja::Error) -> Error {
    Error::Template {
        template: format!("{} {name}", templates.origin),
        source: e,
    }
}

/// Locale- and timezone-aware formatting, shared by the filters.
#[derive(Debug, Clone, Copy)]
struct Format {
    locale: Locale,
    tz: Tz,
    /// The report's as_of instant, which ages are measured against.
    as_of_us: i64,
}

impl Format {
    fn date(&self, d: NaiveDate) -> String {
        match self.locale {
            Locale::En => d.format("%-d %b %Y").to_string(),
            Locale::ZhCn => d.format("%Y年%-m月%-d日").to_string(),
        }
    }

    fn short_date(&self, d: NaiveDate) -> String {
        match self.locale {
            Locale::En => d.format("%b %-d").to_string(),
            Locale::ZhCn => d.format("%-m月%-d日").to_string(),
        }
    }

    fn datetime(&self, micros: i64) -> String {
        let t = self.tz.timestamp_micros(micros).single();
        match (t, self.locale) {
            (None, _) => String::new(),
            (Some(t), Locale::En) => t.format("%-d %b %Y %H:%M").to_string(),
            (Some(t), Locale::ZhCn) => t.format("%Y年%-m月%-d日 %H:%M").to_string(),
        }
    }

    fn age(&self, micros: i64) -> String {
        let hours = (self.as_of_us - micros).max(0) / 3_600_000_000;
        let (d, h) = (hours / 24, hours % 24);
        match (self.locale, d) {
            (Locale::En, 0) => format!("{h}h"),
            (Locale::En, _) => format!("{d}d {h}h"),
            (Locale::ZhCn, 0) => format!("{h}小时"),
            (Locale::ZhCn, _) => format!("{d}天{h}小时"),
        }
    }
}

/// `1234567.891` with 2 decimals → `1,234,567.89`; `signed` adds `+` to positive numbers.
pub fn group_number(v: f64, decimals: usize, signed: bool) -> String {
    let text = format!("{:.*}", decimals, v.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let zero = text.bytes().all(|b| b == b'0' || b == b'.');
    let sign = if v < 0.0 && !zero {
        "-"
    } else if signed && v > 0.0 && !zero {
        "+"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// Digits after the decimal point of a currency's minor unit (ISO 4217).
pub fn currency_exponent(currency: &str) -> i32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

fn number(v: &Value) -> Option<f64> {
    if v.is_none() || v.is_undefined() {
        return None;
    }
    f64::try_from(v.clone()).ok()
}

fn environment(templates: &Templates, format: Format) -> Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    for (name, source) in [
        ("report.html.j2", templates.html.clone()),
        ("report.txt.j2", templates.text.clone()),
    ] {
        env.add_template_owned(name, source)
            .map_err(|e| template_error(templates, name, e))?;
    }
    let dash = || "—".to_string();
    env.add_filter(
        "num",
        move |v: Value, decimals: Option<usize>, signed: Option<bool>| {
            number(&v).map_or_else(dash, |x| {
                group_number(x, decimals.unwrap_or(0), signed.unwrap_or(false))
            })
        },
    );
    env.add_filter(
        "pct",
        move |v: Value, decimals: Option<usize>, signed: Option<bool>| {
            number(&v).map_or_else(dash, |x| {
                format!(
                    "{}%",
                    group_number(x * 100.0, decimals.unwrap_or(1), signed.unwrap_or(false))
                )
            })
        },
    );
    env.add_filter("pp", move |v: Value| {
        number(&v).map_or_else(dash, |x| format!("{} pp", group_number(x * 100.0, 1, true)))
    });
    env.add_filter("major", |v: Value, currency: String| {
        number(&v).map_or(Value::from(()), |x| {
            Value::from(x / 10f64.powi(currency_exponent(&currency)))
        })
    });
    env.add_filter("money", move |v: Value, currency: String| {
        let exponent = currency_exponent(&currency);
        number(&v).map_or_else(dash, |x| {
            format!(
                "{currency} {}",
                group_number(x / 10f64.powi(exponent), exponent as usize, false)
            )
        })
    });
    env.add_filter("date", move |v: String| {
        v.parse::<NaiveDate>().map_or(v, |d| format.date(d))
    });
    env.add_filter("datetime", move |v: i64| format.datetime(v));
    env.add_filter("age", move |v: i64| format.age(v));
    env.add_filter("heat", |rate: f64| heat(rate));
    env.add_function("change", |value: Value, prev: Value, _kw: Kwargs| {
        Ok(change(number(&value), number(&prev)))
    });
    Ok(env)
}

/// The change from `prev` to `value`, for the delta columns: direction, arrow, the absolute
/// change, the relative change (None when prev is 0) and how many decimals the change needs.
fn change(value: Option<f64>, prev: Option<f64>) -> Value {
    let (Some(v), Some(p)) = (value, prev) else {
        return Value::from_serialize(BTreeMap::from([("dir", "none")]));
    };
    let diff = v - p;
    let (dir, arrow) = if diff.abs() < 1e-12 {
        ("flat", "=")
    } else if diff > 0.0 {
        ("up", "▲")
    } else {
        ("down", "▼")
    };
    let integral = v.fract() == 0.0 && p.fract() == 0.0;
    context! {
        dir => dir,
        arrow => arrow,
        abs => diff,
        pct => (p != 0.0).then(|| diff / p.abs()),
        decimals => if integral { 0 } else { 2 },
    }
}

/// Background colour of a retention heat-map cell: white to deep blue as the rate rises.
fn heat(rate: f64) -> String {
    let r = rate.clamp(0.0, 1.0);
    let mix = |from: f64, to: f64| (from + (to - from) * r).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(239.0, 30.0),
        mix(246.0, 64.0),
        mix(255.0, 175.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_signed() {
        assert_eq!(group_number(1234567.891, 2, false), "1,234,567.89");
        assert_eq!(group_number(-1234.0, 0, false), "-1,234");
        assert_eq!(group_number(12.0, 0, true), "+12");
        assert_eq!(group_number(-0.0001, 1, true), "0.0");
        assert_eq!(group_number(999.0, 0, false), "999");
    }

    #[test]
    fn money_uses_the_currency_minor_unit() {
        assert_eq!(currency_exponent("CNY"), 2);
        assert_eq!(currency_exponent("JPY"), 0);
        assert_eq!(currency_exponent("KWD"), 3);
    }

    #[test]
    fn dates_follow_the_locale() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let zh = Format {
            locale: Locale::ZhCn,
            tz,
            as_of_us: crate::models::local_midnight(d, tz),
        };
        assert_eq!(zh.date(d), "2026年11月23日");
        let en = Format {
            locale: Locale::En,
            ..zh
        };
        assert_eq!(en.date(d), "23 Nov 2026");
        // 2026-11-22T16:00Z is midnight in Shanghai; 26 hours before as_of.
        let t = crate::event::parse_timestamp("2026-11-21T14:00:00Z").unwrap();
        assert_eq!(zh.datetime(t), "2026年11月21日 22:00");
        assert_eq!(en.age(t), "1d 2h");
        assert_eq!(zh.age(t), "1天2小时");
    }

    /// A report of a community with no events (every list empty).
    fn empty_report(late: bool) -> ReportData {
        let d = |day: u32| NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
        ReportData {
            community_id: "c1".into(),
            community_name: "Python 实战营".into(),
            timezone: "Asia/Shanghai".into(),
            as_of: d(23),
            w_start: d(16),
            w_end: d(22),
            wp_start: d(9),
            wp_end: d(15),
            window_days: 7,
            prev_as_of: None,
            kpis: Vec::new(),
            revenue: Vec::new(),
            tiers: Vec::new(),
            members_total: 0,
            top_members: Vec::new(),
            new_contributors: Vec::new(),
            influence: None,
            prev_influence: None,
            top_influencers: Vec::new(),
            cohorts: Vec::new(),
            cohort_offsets: Vec::new(),
            demand: Vec::new(),
            category_health: Vec::new(),
            emerging: Vec::new(),
            unanswered_posts: Vec::new(),
            at_risk: Vec::new(),
            at_risk_total: 0,
            streak_leaders: Vec::new(),
            tier_moves: Default::default(),
            slipped: Vec::new(),
            top_content: Vec::new(),
            membership: Default::default(),
            daily_active: Vec::new(),
            late,
            names: Default::default(),
        }
    }

    #[test]
    fn a_late_report_says_so_in_subject_and_body() {
        let dir = tempfile::tempdir().unwrap();
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let templates = Templates::built_in();
        let late = render(
            &empty_report(true),
            Locale::ZhCn,
            tz,
            &templates,
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            late.subject,
            "【补发】【Python 实战营】社区运营报告 2026年11月16日 – 2026年11月22日"
        );
        assert!(late.text.starts_with("迟发："), "{}", late.text);
        assert!(late.html_email.contains("迟发："));
        let on_time = render(&empty_report(false), Locale::En, tz, &templates, dir.path()).unwrap();
        assert_eq!(
            on_time.subject,
            "[Python 实战营] Community report, 16 Nov 2026 – 22 Nov 2026"
        );
        assert!(on_time.text.contains("No events before this date"));
    }

    #[test]
    fn changes_know_their_direction() {
        let c = change(Some(12.0), Some(10.0));
        assert_eq!(c.get_attr("dir").unwrap().to_string(), "up");
        assert_eq!(f64::try_from(c.get_attr("pct").unwrap()).unwrap(), 0.2);
        let none = change(Some(1.0), None);
        assert_eq!(none.get_attr("dir").unwrap().to_string(), "none");
        let from_zero = change(Some(3.0), Some(0.0));
        assert!(from_zero.get_attr("pct").unwrap().is_none());
    }
}
