//! Metric settings: `[defaults]` and the same keys on each `[[communities]]` entry, resolved
//! field by field (community, then `[defaults]`, then the built-in default) into
//! [`CommunitySettings`], what the models read. `points`, `activity_weights` and `tiers` resolve
//! key by key, so overriding one point weight keeps the others.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use serde::Deserialize;

use super::{looks_like_mailbox, Config, Timezone};
use crate::error::{Error, Result};
use crate::event::EventType;

/// Defines [`Settings`] (`[defaults]`: every metric setting, all optional) and
/// [`CommunityConfig`] (a `[[communities]]` entry: `id`, `name` and the same settings as
/// overrides) from one field list, so the two cannot drift apart. (serde's `flatten` would do
/// this but does not work with `deny_unknown_fields`.)
macro_rules! metric_settings {
    ($($field:ident: $ty:ty),* $(,)?) => {
        /// Metric settings: `[defaults]`, and the same keys on any `[[communities]]` entry.
        /// Every field is optional here; [`CommunitySettings`] is the resolved form.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $(pub $field: Option<$ty>,)*
        }

        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct CommunityConfig {
            pub id: String,
            #[serde(default)]
            pub name: Option<String>,
            $(pub $field: Option<$ty>,)*
        }

        impl CommunityConfig {
            /// A community's own overrides, in the same shape as `[defaults]`.
            pub(super) fn settings(&self) -> Settings {
                Settings { $($field: self.$field.clone(),)* }
            }
        }
    };
}

metric_settings! {
    timezone: Timezone,
    locale: Locale,
    window_days: u32,
    normalization: Normalization,
    top_n: u32,
    cohort_grain: CohortGrain,
    cohort_periods: u32,
    exclude_members: Vec<String>,
    active_event_types: Vec<String>,
    activity_weights: ActivityWeightsOverride,
    tiers: TiersOverride,
    points: BTreeMap<String, PointRule>,
    membership: MembershipOverride,
    emerging: EmergingOverride,
    report_to: Vec<String>,
    taxonomies: Vec<Taxonomy>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Locale {
    #[default]
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    ZhCn,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    #[default]
    None,
    Percentile,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CohortGrain {
    #[default]
    Month,
    Week,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityWeightsOverride {
    pub participation: Option<f64>,
    pub interaction: Option<f64>,
    pub contribution: Option<f64>,
    pub retention: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiersOverride {
    pub contributor_min_contribution: Option<u32>,
    pub active_min_days: Option<u32>,
    pub at_risk_prev_min_days: Option<u32>,
}

/// `membership = { … }` (SPEC §4.9): overrides key by key; a `product_terms` given replaces the
/// map of the layer below.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipOverride {
    pub term_days: Option<u32>,
    pub grace_days: Option<u32>,
    pub horizon_days: Option<u32>,
    pub product_terms: Option<BTreeMap<String, u32>>,
}

/// `emerging = { … }` (emerging topics, docs/metrics.md#emerging_terms): overrides key by key;
/// an `extra_stopwords` given replaces the list of the layer below.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergingOverride {
    pub top_n: Option<u32>,
    pub min_authors: Option<u32>,
    pub extra_stopwords: Option<Vec<String>>,
}

/// Emerging-topic settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emerging {
    /// Terms kept per taxonomy in `emerging_terms`.
    pub top_n: u32,
    /// A term needs this many distinct authors in W to count.
    pub min_authors: u32,
    /// Words never counted as terms, besides the shipped stop words (lowercased at resolution:
    /// terms are lowercase).
    pub extra_stopwords: Vec<String>,
}

/// Paid-membership settings (SPEC §4.9), resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Days a purchase buys when its product (content_id) has no term of its own.
    pub term_days: u32,
    /// Days after a paid term ends before the member counts as lapsed; purchases this close
    /// merge into one spell and still count as renewals.
    pub grace_days: u32,
    /// The report's "renewals coming up": paying members with fewer days left than this.
    pub horizon_days: u32,
    /// Term in days per product (a purchase's content_id).
    pub product_terms: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointRule {
    pub weight: f64,
    pub daily_cap: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taxonomy {
    pub name: String,
    pub categories: Vec<Category>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub name: String,
    pub keywords: Vec<String>,
}

/// The settings of one community after resolution (community, then `[defaults]`, then
/// built-in defaults). This is what the models read.
#[derive(Debug, Clone, PartialEq)]
pub struct CommunitySettings {
    pub id: String,
    pub name: String,
    pub timezone: Tz,
    pub locale: Locale,
    pub window_days: u32,
    pub normalization: Normalization,
    pub top_n: u32,
    pub cohort_grain: CohortGrain,
    pub cohort_periods: u32,
    pub exclude_members: Vec<String>,
    pub active_event_types: Vec<EventType>,
    pub activity_weights: ActivityWeights,
    pub tiers: Tiers,
    /// Point rule per event type; types not listed earn nothing.
    pub points: BTreeMap<EventType, PointRule>,
    pub membership: Membership,
    pub emerging: Emerging,
    pub report_to: Vec<String>,
    pub taxonomies: Vec<Taxonomy>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivityWeights {
    pub participation: f64,
    pub interaction: f64,
    pub contribution: f64,
    pub retention: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiers {
    pub contributor_min_contribution: u32,
    pub active_min_days: u32,
    pub at_risk_prev_min_days: u32,
}

/// SPEC §4.2 default point rules: (type, weight, daily cap).
const DEFAULT_POINTS: &[(EventType, f64, u32)] = &[
    (EventType::Post, 10.0, 5),
    (EventType::Comment, 3.0, 20),
    (EventType::Solution, 15.0, 5),
    (EventType::Like, 1.0, 30),
    (EventType::Share, 2.0, 10),
    (EventType::Cite, 2.0, 10),
    (EventType::Checkin, 5.0, 1),
    (EventType::Attend, 10.0, 3),
];

/// The default taxonomies of SPEC §4.6 (the seed's): (taxonomy, category, keywords).
/// `config/pulse.example.toml` documents the same lists; a test holds the two equal.
const DEFAULT_TAXONOMIES: &[(&str, &str, &[&str])] = &[
    (
        "needs",
        "学习需求",
        &[
            "学习",
            "课程",
            "教程",
            "入门",
            "学会",
            "怎么学",
            "资料",
            "推荐书",
            "learn",
            "course",
            "tutorial",
            "beginner",
            "study plan",
            "resources",
        ],
    ),
    (
        "needs",
        "社交需求",
        &[
            "交流",
            "认识",
            "朋友",
            "组队",
            "线下",
            "聚会",
            "同城",
            "交友",
            "networking",
            "meetup",
            "connect",
            "introduce myself",
            "study buddy",
            "team up",
        ],
    ),
    (
        "needs",
        "解决问题需求",
        &[
            "报错",
            "错误",
            "问题",
            "求助",
            "怎么办",
            "bug",
            "失败",
            "不工作",
            "error",
            "help",
            "issue",
            "how do i",
            "not working",
            "fix",
        ],
    ),
    (
        "content",
        "技术分享",
        &[
            "分享",
            "源码",
            "架构",
            "性能",
            "实践",
            "代码",
            "教程",
            "sharing",
            "deep dive",
            "architecture",
            "performance",
            "source code",
            "walkthrough",
        ],
    ),
    (
        "content",
        "学习经验",
        &[
            "经验",
            "心得",
            "笔记",
            "总结",
            "复盘",
            "打卡",
            "学习路线",
            "notes",
            "lessons learned",
            "my journey",
            "retrospective",
            "roadmap",
            "takeaways",
        ],
    ),
    (
        "content",
        "行业动态",
        &[
            "行业",
            "趋势",
            "新闻",
            "发布",
            "招聘",
            "融资",
            "动态",
            "industry",
            "trend",
            "news",
            "release",
            "announced",
            "hiring",
            "funding",
        ],
    ),
];

/// The built-in taxonomies, used when the config defines none.
pub fn default_taxonomies() -> Vec<Taxonomy> {
    let mut taxonomies: Vec<Taxonomy> = Vec::new();
    for (taxonomy, category, keywords) in DEFAULT_TAXONOMIES {
        let category = Category {
            name: category.to_string(),
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
        };
        match taxonomies.iter_mut().find(|t| t.name == *taxonomy) {
            Some(t) => t.categories.push(category),
            None => taxonomies.push(Taxonomy {
                name: taxonomy.to_string(),
                categories: vec![category],
            }),
        }
    }
    taxonomies
}

impl Config {
    /// The resolved settings of every configured community, in config order.
    pub fn communities(&self) -> Vec<CommunitySettings> {
        self.communities
            .iter()
            .map(|c| self.resolve(&c.id, c.name.clone(), &c.settings()))
            .collect()
    }

    /// Settings for `id`: its `[[communities]]` entry if configured, else `[defaults]` alone
    /// (communities found in the lake but not configured run on the defaults).
    pub fn community(&self, id: &str) -> CommunitySettings {
        match self.communities.iter().find(|c| c.id == id) {
            Some(c) => self.resolve(&c.id, c.name.clone(), &c.settings()),
            None => self.resolve(id, None, &Settings::default()),
        }
    }

    fn resolve(&self, id: &str, name: Option<String>, own: &Settings) -> CommunitySettings {
        let d = &self.defaults;
        let aw = |f: fn(&ActivityWeightsOverride) -> Option<f64>, builtin: f64| {
            own.activity_weights
                .as_ref()
                .and_then(f)
                .or_else(|| d.activity_weights.as_ref().and_then(f))
                .unwrap_or(builtin)
        };
        let tier = |f: fn(&TiersOverride) -> Option<u32>, builtin: u32| {
            own.tiers
                .as_ref()
                .and_then(f)
                .or_else(|| d.tiers.as_ref().and_then(f))
                .unwrap_or(builtin)
        };
        let mut points: BTreeMap<EventType, PointRule> = DEFAULT_POINTS
            .iter()
            .map(|&(t, weight, daily_cap)| (t, PointRule { weight, daily_cap }))
            .collect();
        for layer in [&d.points, &own.points].into_iter().flatten() {
            for (name, rule) in layer {
                // Names were checked in `validate`.
                if let Ok(t) = name.parse::<EventType>() {
                    points.insert(t, *rule);
                }
            }
        }
        let timezone = own.timezone.or(d.timezone).map_or(Tz::UTC, |t| t.0);
        let active_event_types = own
            .active_event_types
            .as_ref()
            .or(d.active_event_types.as_ref())
            .map(|v| v.iter().filter_map(|t| t.parse().ok()).collect())
            .unwrap_or_else(|| EventType::DEFAULT_ACTIVE.to_vec());
        let ms = |f: fn(&MembershipOverride) -> Option<u32>, builtin: u32| {
            own.membership
                .as_ref()
                .and_then(f)
                .or_else(|| d.membership.as_ref().and_then(f))
                .unwrap_or(builtin)
        };
        let membership = Membership {
            term_days: ms(|m| m.term_days, 365),
            grace_days: ms(|m| m.grace_days, 7),
            horizon_days: ms(|m| m.horizon_days, 30),
            product_terms: [&own.membership, &d.membership]
                .into_iter()
                .flatten()
                .find_map(|m| m.product_terms.clone())
                .unwrap_or_default(),
        };
        let em = |f: fn(&EmergingOverride) -> Option<u32>, builtin: u32| {
            own.emerging
                .as_ref()
                .and_then(f)
                .or_else(|| d.emerging.as_ref().and_then(f))
                .unwrap_or(builtin)
        };
        let emerging = Emerging {
            top_n: em(|e| e.top_n, 20),
            min_authors: em(|e| e.min_authors, 2),
            extra_stopwords: [&own.emerging, &d.emerging]
                .into_iter()
                .flatten()
                .find_map(|e| e.extra_stopwords.clone())
                .unwrap_or_default()
                .iter()
                .map(|w| w.trim().to_lowercase())
                .collect(),
        };
        CommunitySettings {
            id: id.to_string(),
            name: name.unwrap_or_else(|| id.to_string()),
            timezone,
            locale: own.locale.or(d.locale).unwrap_or_default(),
            window_days: own.window_days.or(d.window_days).unwrap_or(30),
            normalization: own.normalization.or(d.normalization).unwrap_or_default(),
            top_n: own.top_n.or(d.top_n).unwrap_or(100),
            cohort_grain: own.cohort_grain.or(d.cohort_grain).unwrap_or_default(),
            cohort_periods: own.cohort_periods.or(d.cohort_periods).unwrap_or(12),
            exclude_members: own
                .exclude_members
                .clone()
                .or_else(|| d.exclude_members.clone())
                .unwrap_or_default(),
            active_event_types,
            activity_weights: ActivityWeights {
                participation: aw(|w| w.participation, 0.5),
                interaction: aw(|w| w.interaction, 0.3),
                contribution: aw(|w| w.contribution, 0.1),
                retention: aw(|w| w.retention, 0.1),
            },
            tiers: Tiers {
                contributor_min_contribution: tier(|t| t.contributor_min_contribution, 10),
                active_min_days: tier(|t| t.active_min_days, 8),
                at_risk_prev_min_days: tier(|t| t.at_risk_prev_min_days, 8),
            },
            points,
            membership,
            emerging,
            report_to: own
                .report_to
                .clone()
                .or_else(|| d.report_to.clone())
                .unwrap_or_default(),
            taxonomies: own
                .taxonomies
                .clone()
                .or_else(|| d.taxonomies.clone())
                .or_else(|| self.taxonomies.clone())
                .unwrap_or_else(default_taxonomies),
        }
    }
}

pub(super) fn check_settings(
    s: &Settings,
    at: &str,
    err: &impl Fn(String, String) -> Error,
) -> Result<()> {
    let at_least_one = [
        ("window_days", s.window_days),
        ("top_n", s.top_n),
        ("cohort_periods", s.cohort_periods),
    ];
    for (key, value) in at_least_one {
        if value == Some(0) {
            return Err(err(format!("{at}.{key}"), "must be at least 1".into()));
        }
    }
    if let Some(w) = s.window_days {
        if w > 3660 {
            return Err(err(
                format!("{at}.window_days"),
                format!("{w} days is more than ten years"),
            ));
        }
    }
    if let Some(types) = &s.active_event_types {
        for (i, t) in types.iter().enumerate() {
            if t.parse::<EventType>().is_err() {
                return Err(err(
                    format!("{at}.active_event_types[{i}]"),
                    format!("`{t}` is not an event type"),
                ));
            }
        }
    }
    if let Some(w) = &s.activity_weights {
        for (key, v) in [
            ("participation", w.participation),
            ("interaction", w.interaction),
            ("contribution", w.contribution),
            ("retention", w.retention),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    return Err(err(
                        format!("{at}.activity_weights.{key}"),
                        format!("must be a number ≥ 0 (got {v})"),
                    ));
                }
            }
        }
    }
    if let Some(points) = &s.points {
        for (name, rule) in points {
            if name.parse::<EventType>().is_err() {
                return Err(err(
                    format!("{at}.points.{name}"),
                    format!("`{name}` is not an event type"),
                ));
            }
            if !rule.weight.is_finite() || rule.weight < 0.0 {
                return Err(err(
                    format!("{at}.points.{name}.weight"),
                    "must be a number ≥ 0".into(),
                ));
            }
        }
    }
    if let Some(m) = &s.membership {
        if m.term_days == Some(0) {
            return Err(err(
                format!("{at}.membership.term_days"),
                "must be at least 1".into(),
            ));
        }
        for (product, days) in m.product_terms.iter().flatten() {
            if *days == 0 {
                return Err(err(
                    format!("{at}.membership.product_terms.{product}"),
                    "must be at least 1 day".into(),
                ));
            }
        }
        for (key, days) in [
            ("term_days", m.term_days),
            ("grace_days", m.grace_days),
            ("horizon_days", m.horizon_days),
        ] {
            if days.is_some_and(|d| d > 36_600) {
                return Err(err(
                    format!("{at}.membership.{key}"),
                    "is more than a hundred years".into(),
                ));
            }
        }
        for (product, days) in m.product_terms.iter().flatten() {
            if *days > 36_600 {
                return Err(err(
                    format!("{at}.membership.product_terms.{product}"),
                    "is more than a hundred years".into(),
                ));
            }
        }
    }
    if let Some(e) = &s.emerging {
        for (key, value) in [("top_n", e.top_n), ("min_authors", e.min_authors)] {
            if value == Some(0) {
                return Err(err(
                    format!("{at}.emerging.{key}"),
                    "must be at least 1".into(),
                ));
            }
        }
        for (i, word) in e.extra_stopwords.iter().flatten().enumerate() {
            if word.trim().is_empty() {
                return Err(err(
                    format!("{at}.emerging.extra_stopwords[{i}]"),
                    "must not be empty".into(),
                ));
            }
        }
    }
    if let Some(to) = &s.report_to {
        for (i, addr) in to.iter().enumerate() {
            if !looks_like_mailbox(addr) {
                return Err(err(
                    format!("{at}.report_to[{i}]"),
                    format!("`{addr}` is not an email address"),
                ));
            }
        }
    }
    if let Some(t) = &s.taxonomies {
        check_taxonomies(t, &format!("{at}.taxonomies"), err)?;
    }
    Ok(())
}

pub(super) fn check_taxonomies(
    taxonomies: &[Taxonomy],
    at: &str,
    err: &impl Fn(String, String) -> Error,
) -> Result<()> {
    let mut names = std::collections::HashSet::new();
    for (i, t) in taxonomies.iter().enumerate() {
        if t.name.trim().is_empty() {
            return Err(err(format!("{at}[{i}].name"), "must not be empty".into()));
        }
        if !names.insert(t.name.as_str()) {
            return Err(err(
                format!("{at}[{i}].name"),
                format!("taxonomy `{}` is defined twice", t.name),
            ));
        }
        let mut cats = std::collections::HashSet::new();
        for (j, c) in t.categories.iter().enumerate() {
            let key = format!("{at}[{i}].categories[{j}]");
            if c.name.trim().is_empty() || c.name == "uncategorized" {
                return Err(err(
                    format!("{key}.name"),
                    "must be non-empty and not `uncategorized`".into(),
                ));
            }
            if !cats.insert(c.name.as_str()) {
                return Err(err(
                    format!("{key}.name"),
                    format!("category `{}` appears twice", c.name),
                ));
            }
            if c.keywords.is_empty() || c.keywords.iter().any(|k| k.trim().is_empty()) {
                return Err(err(
                    format!("{key}.keywords"),
                    "must list at least one non-empty keyword".into(),
                ));
            }
        }
    }
    Ok(())
}
