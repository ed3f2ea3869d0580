//! What one report shows, gathered from the metric tables by the report queries
//! ([`super::read`]): the data the templates render.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use super::read::{Queries, RankedMember};
use crate::config::CommunitySettings;
use crate::error::Result;

/// Tiers in the order the report lists them (SPEC §4.3).
pub const TIERS: [&str; 8] = [
    "contributor",
    "active",
    "new",
    "regular",
    "at_risk",
    "dormant",
    "left",
    "banned",
];

/// Everything one report shows.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    pub community_id: String,
    pub community_name: String,
    pub timezone: String,
    #[serde(with = "crate::state::iso_date")]
    pub as_of: NaiveDate,
    /// First and last local day of W, and of W′.
    #[serde(with = "crate::state::iso_date")]
    pub w_start: NaiveDate,
    #[serde(with = "crate::state::iso_date")]
    pub w_end: NaiveDate,
    #[serde(with = "crate::state::iso_date")]
    pub wp_start: NaiveDate,
    #[serde(with = "crate::state::iso_date")]
    pub wp_end: NaiveDate,
    pub window_days: u32,
    /// The as_of of the previous report's metrics (tier and influence deltas), if any.
    #[serde(with = "crate::state::iso_date::option")]
    pub prev_as_of: Option<NaiveDate>,
    /// Headline KPIs (not per currency), in the order the report shows them.
    pub kpis: Vec<Kpi>,
    pub revenue: Vec<Revenue>,
    pub tiers: Vec<TierCount>,
    pub members_total: i64,
    pub top_members: Vec<RankedMember>,
    pub new_contributors: Vec<NewContributor>,
    pub influence: Option<Influence>,
    pub prev_influence: Option<Influence>,
    pub top_influencers: Vec<Influencer>,
    pub cohorts: Vec<Cohort>,
    pub cohort_offsets: Vec<i64>,
    pub demand: Vec<Taxonomy>,
    /// Time to a first answer and engagement per post, per demand category.
    pub category_health: Vec<Taxonomy<CategoryHealth>>,
    /// Words members use that no keyword covers (docs/metrics.md#emerging_terms), top first.
    pub emerging: Vec<EmergingTerm>,
    pub unanswered_posts: Vec<UnansweredPost>,
    pub at_risk: Vec<AtRisk>,
    pub at_risk_total: i64,
    /// Current check-in streaks (打卡, SPEC §4.10), longest first.
    pub streak_leaders: Vec<StreakLeader>,
    /// Tier movement over W (tier_transitions), and who slipped from contributor or active.
    pub tier_moves: TierMoves,
    pub slipped: Vec<Slipped>,
    /// The posts of W most other members engaged with (top_content).
    pub top_content: Vec<TopPost>,
    /// Paid membership (SPEC §4.9).
    pub membership: MembershipSection,
    /// Members active per local day, W′ then W (zeros filled in).
    pub daily_active: Vec<DayCount>,
    /// Sent after its scheduled time (a catch-up after downtime).
    pub late: bool,
    /// Display names (member directory, SPEC §8) of the members this report lists.
    pub names: std::collections::BTreeMap<String, String>,
}

impl ReportData {
    /// Every member id a list of this report shows.
    pub fn listed_members(&self) -> impl Iterator<Item = &str> {
        self.top_members
            .iter()
            .map(|m| m.member_id.as_str())
            .chain(self.new_contributors.iter().map(|m| m.member_id.as_str()))
            .chain(self.top_influencers.iter().map(|m| m.member_id.as_str()))
            .chain(self.unanswered_posts.iter().map(|p| p.member_id.as_str()))
            .chain(self.at_risk.iter().map(|m| m.member_id.as_str()))
            .chain(self.streak_leaders.iter().map(|m| m.member_id.as_str()))
            .chain(self.slipped.iter().map(|m| m.member_id.as_str()))
            .chain(self.top_content.iter().map(|p| p.member_id.as_str()))
            .chain(
                self.membership
                    .renewals
                    .iter()
                    .map(|m| m.member_id.as_str()),
            )
    }
}

/// Members per direction of tier movement over W (tier_transitions).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TierMoves {
    pub up: i64,
    pub held: i64,
    pub down: i64,
    pub joined: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slipped {
    pub member_id: String,
    pub from_tier: String,
    pub to_tier: String,
    pub active_days: i64,
    pub last_active_us: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopPost {
    pub rank: i64,
    pub member_id: String,
    pub content_id: Option<String>,
    pub title: Option<String>,
    pub occurred_at_us: i64,
    pub engagers: i64,
    pub comments: i64,
    pub likes: i64,
    pub shares: i64,
    pub cites: i64,
    #[serde(default)]
    pub categories: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kpi {
    pub metric: String,
    pub value: Option<f64>,
    pub prev_value: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Revenue {
    pub currency: String,
    pub revenue_minor: Option<f64>,
    pub prev_revenue_minor: Option<f64>,
    pub purchasers: Option<f64>,
    pub prev_purchasers: Option<f64>,
    pub arppu_minor: Option<f64>,
    pub prev_arppu_minor: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TierCount {
    pub tier: String,
    pub members: i64,
    /// None when there is no previous report to compare with.
    pub prev_members: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewContributor {
    pub member_id: String,
    pub contribution: i64,
    pub participation: i64,
    pub activity_score: f64,
    pub prev_tier: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Influence {
    #[serde(skip_serializing)]
    pub is_current: bool,
    pub size_total: i64,
    pub members: i64,
    pub activity_rate: f64,
    pub participation_rate: f64,
    pub influence: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Influencer {
    pub member_id: String,
    pub reach: i64,
    pub interactions_received: i64,
    pub pagerank: f64,
}

#[derive(Debug, Clone, Deserialize)]
struct CohortCell {
    cohort_start: String,
    period_offset: i64,
    cohort_size: i64,
    retained: i64,
    retention_rate: f64,
    is_partial: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cohort {
    pub cohort_start: String,
    pub cohort_size: i64,
    /// One per offset 0…max (None where the period has not started yet).
    pub cells: Vec<Option<RetentionCell>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetentionCell {
    pub retained: i64,
    pub rate: f64,
    pub is_partial: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemandRow {
    #[serde(skip_serializing)]
    pub taxonomy: String,
    pub category: String,
    pub posts: i64,
    pub members: i64,
    pub share: f64,
    pub prev_posts: i64,
    pub growth: f64,
    pub unanswered: i64,
    pub unanswered_rate: f64,
    pub priority: f64,
    pub priority_rank: i64,
}

/// The rows of one taxonomy, in the order the report query gave them.
#[derive(Debug, Clone, Serialize)]
pub struct Taxonomy<R = DemandRow> {
    pub name: String,
    /// The configured categories by priority, then `uncategorized` (demand); in the
    /// report query's order (category_health).
    pub categories: Vec<R>,
}

/// A row of a per-category table.
pub trait OfTaxonomy {
    fn taxonomy(&self) -> &str;
}

impl OfTaxonomy for DemandRow {
    fn taxonomy(&self) -> &str {
        &self.taxonomy
    }
}

impl OfTaxonomy for CategoryHealth {
    fn taxonomy(&self) -> &str {
        &self.taxonomy
    }
}

/// Rows sorted by taxonomy, grouped by it.
fn by_taxonomy<R: OfTaxonomy>(rows: Vec<R>) -> Vec<Taxonomy<R>> {
    let mut out: Vec<Taxonomy<R>> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some(t) if t.name == row.taxonomy() => t.categories.push(row),
            _ => out.push(Taxonomy {
                name: row.taxonomy().to_string(),
                categories: vec![row],
            }),
        }
    }
    out
}

/// How members are served in a demand category (category_health).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CategoryHealth {
    #[serde(skip_serializing)]
    pub taxonomy: String,
    pub category: String,
    pub posts: i64,
    pub replied: i64,
    pub open: i64,
    pub median_reply_hours: Option<f64>,
    pub p90_reply_hours: Option<f64>,
    pub due_48h: i64,
    pub answered_48h: i64,
    pub answered_48h_rate: Option<f64>,
    pub engagement_per_post: Option<f64>,
    pub prev_engagement_per_post: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmergingTerm {
    #[serde(skip_serializing)]
    pub taxonomy: String,
    pub rank: i64,
    pub term: String,
    pub authors: i64,
    pub posts: i64,
    pub prev_authors: i64,
    pub growth: f64,
    /// The taxonomy's category whose posts use the term most; none when no category's do.
    #[serde(default)]
    pub category: Option<String>,
    pub category_posts: i64,
    /// Titles of its posts, latest first (absent in the JSON rows when null).
    #[serde(default)]
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnansweredPost {
    pub member_id: String,
    pub content_id: Option<String>,
    pub title: Option<String>,
    pub occurred_at_us: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AtRisk {
    pub member_id: String,
    pub active_days: i64,
    pub points: f64,
    pub activity_score: f64,
    pub last_active_us: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DayCount {
    #[serde(with = "crate::state::iso_date")]
    pub day: NaiveDate,
    pub members: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreakLeader {
    pub member_id: String,
    pub checkin_streak: i64,
    pub longest_checkin_streak: i64,
}

/// The report's membership section (SPEC §4.9).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MembershipSection {
    /// Members with a purchase before as_of (rows of `membership`); 0 hides the section.
    pub payers: i64,
    /// paid_members, new_payers, renewals_due, renewals, renewal_rate, refunds, refund_rate.
    pub kpis: Vec<Kpi>,
    /// Current members: paying × active in W.
    pub paid_activity: PaidActivity,
    /// "Renewals coming up": paying members with days_left < horizon_days, soonest first.
    pub renewals: Vec<Renewal>,
    pub renewals_total: i64,
    pub horizon_days: u32,
    /// Revenue cohorts (one row per cohort and currency), latest first, for the heat map.
    pub cohorts: Vec<RevenueCohort>,
    pub cohort_offsets: Vec<i64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PaidActivity {
    pub paying_active: i64,
    pub paying_inactive: i64,
    pub unpaid_active: i64,
    pub unpaid_inactive: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct PaidActivityRow {
    paying: bool,
    active: bool,
    members: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Renewal {
    pub member_id: String,
    pub days_left: i64,
    pub paid_until_us: i64,
    pub active_days: i64,
    /// Active in W; the report marks those who were not.
    pub active: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct Count {
    members: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct RevenueCohortRow {
    cohort_start: String,
    currency: String,
    period_offset: i64,
    cohort_size: i64,
    paying: i64,
    paying_rate: f64,
    net_revenue_minor: i64,
    revenue_retention: Option<f64>,
    is_partial: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RevenueCohort {
    pub cohort_start: String,
    pub currency: String,
    pub cohort_size: i64,
    /// One per offset 0…max (None where the period has not started yet).
    pub cells: Vec<Option<RevenueCell>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RevenueCell {
    pub paying: i64,
    pub paying_rate: f64,
    pub net_revenue_minor: i64,
    pub revenue_retention: Option<f64>,
    pub is_partial: bool,
}

/// The KPIs of the membership section, in the order it shows them.
const MEMBERSHIP_KPIS: [&str; 7] = [
    "paid_members",
    "new_payers",
    "renewals_due",
    "renewals",
    "renewal_rate",
    "refunds",
    "refund_rate",
];

/// How many rows the member lists of the report show.
pub const LIST_LIMIT: i64 = 10;
/// How many at-risk members the report lists (all of them are counted).
const AT_RISK_LIMIT: i64 = 25;
/// How many emerging topics the report lists (the table keeps `emerging.top_n`).
const EMERGING_LIMIT: i64 = 5;
/// How many "renewals coming up" the report lists (all of them are counted).
const RENEWALS_LIMIT: i64 = 25;

/// Gather the report of `settings` from its metric tables.
pub async fn gather(q: &Queries, settings: &CommunitySettings) -> Result<ReportData> {
    let window = q.window;
    let as_of = window.as_of;
    let prev_as_of = q.prev_as_of;
    let all_kpis: Vec<Kpi> = q.rows("kpis", LIST_LIMIT).await?;
    let membership_kpis: Vec<Kpi> = MEMBERSHIP_KPIS
        .iter()
        .filter_map(|m| all_kpis.iter().find(|k| k.metric == *m).cloned())
        .collect();
    let (kpis, revenue) = split_kpis(all_kpis);
    let mut paid_activity = PaidActivity::default();
    for row in q
        .rows::<PaidActivityRow>("paid_activity", LIST_LIMIT)
        .await?
    {
        let cell = match (row.paying, row.active) {
            (true, true) => &mut paid_activity.paying_active,
            (true, false) => &mut paid_activity.paying_inactive,
            (false, true) => &mut paid_activity.unpaid_active,
            (false, false) => &mut paid_activity.unpaid_inactive,
        };
        *cell += row.members;
    }
    let (revenue_cohorts, revenue_offsets) =
        revenue_cohort_table(q.rows("revenue_cohorts", LIST_LIMIT).await?);
    let count = |rows: Vec<Count>| rows.first().map_or(0, |c| c.members);
    let membership = MembershipSection {
        payers: count(q.rows("membership_total", LIST_LIMIT).await?),
        kpis: membership_kpis,
        paid_activity,
        renewals: q.rows("renewals_coming", RENEWALS_LIMIT).await?,
        renewals_total: count(q.rows("renewals_coming_total", LIST_LIMIT).await?),
        horizon_days: settings.membership.horizon_days,
        cohorts: revenue_cohorts,
        cohort_offsets: revenue_offsets,
    };
    let by_tier: BTreeMap<String, TierCount> = q
        .rows::<TierCount>("tiers", LIST_LIMIT)
        .await?
        .into_iter()
        .map(|t| (t.tier.clone(), t))
        .collect();
    let tiers: Vec<TierCount> = TIERS
        .iter()
        .map(|tier| TierCount {
            tier: tier.to_string(),
            members: by_tier.get(*tier).map_or(0, |t| t.members),
            prev_members: prev_as_of
                .map(|_| by_tier.get(*tier).and_then(|t| t.prev_members).unwrap_or(0)),
        })
        .collect();
    let members_total = tiers.iter().map(|t| t.members).sum();
    let at_risk_total = by_tier.get("at_risk").map_or(0, |t| t.members);
    let influences: Vec<Influence> = q.rows("community_influence", LIST_LIMIT).await?;
    let influence = influences.iter().find(|i| i.is_current).cloned();
    let prev_influence = influences.into_iter().find(|i| !i.is_current);
    let (cohorts, cohort_offsets) = cohort_table(q.rows("retention", LIST_LIMIT).await?);
    let demand = by_taxonomy(q.rows::<DemandRow>("demand", LIST_LIMIT).await?);
    let category_health = by_taxonomy(q.rows("category_health", LIST_LIMIT).await?);
    // The terms are the same in every taxonomy (only their category differs): one list.
    let mut emerging: Vec<EmergingTerm> = q.rows("emerging", EMERGING_LIMIT).await?;
    if let Some(first) = emerging.first().map(|t| t.taxonomy.clone()) {
        emerging.retain(|t| t.taxonomy == first);
    }
    let counts: BTreeMap<NaiveDate, i64> = q
        .rows::<DayCount>("daily_active", LIST_LIMIT)
        .await?
        .into_iter()
        .map(|d| (d.day, d.members))
        .collect();
    let daily_active = (0..2 * settings.window_days as i64)
        .map(|i| window.wp_start + Duration::days(i))
        .map(|day| DayCount {
            day,
            members: counts.get(&day).copied().unwrap_or(0),
        })
        .collect();

    Ok(ReportData {
        community_id: settings.id.clone(),
        community_name: settings.name.clone(),
        timezone: settings.timezone.name().to_string(),
        as_of,
        w_start: window.w_start,
        w_end: as_of - Duration::days(1),
        wp_start: window.wp_start,
        wp_end: window.w_start - Duration::days(1),
        window_days: settings.window_days,
        prev_as_of,
        kpis,
        revenue,
        tiers,
        members_total,
        top_members: q.rows("top_members", LIST_LIMIT).await?,
        new_contributors: q.rows("new_contributors", LIST_LIMIT).await?,
        influence,
        prev_influence,
        top_influencers: q.rows("top_influencers", LIST_LIMIT).await?,
        cohorts,
        cohort_offsets,
        demand,
        category_health,
        emerging,
        unanswered_posts: q.rows("unanswered_posts", LIST_LIMIT).await?,
        at_risk: q.rows("at_risk", AT_RISK_LIMIT).await?,
        at_risk_total,
        streak_leaders: q.rows("streak_leaders", LIST_LIMIT).await?,
        tier_moves: q
            .rows("tier_moves", LIST_LIMIT)
            .await?
            .pop()
            .unwrap_or_default(),
        slipped: q.rows("slipped", LIST_LIMIT).await?,
        top_content: q.rows("top_content", LIST_LIMIT).await?,
        membership,
        daily_active,
        late: false,
        names: Default::default(),
    })
}

/// Headline KPIs in report order, and the per-currency revenue rows.
fn split_kpis(all: Vec<Kpi>) -> (Vec<Kpi>, Vec<Revenue>) {
    const HEADLINE: [&str; 10] = [
        "members",
        "new_members",
        "members_left",
        "active_members",
        "avg_daily_active_members",
        "stickiness",
        "posts",
        "comments",
        "solutions",
        "purchasers",
    ];
    let find = |m: &str| all.iter().find(|k| k.metric == m);
    let kpis = HEADLINE.iter().filter_map(|m| find(m).cloned()).collect();
    let currencies: Vec<&str> = all
        .iter()
        .filter_map(|k| k.metric.strip_prefix("revenue_minor:"))
        .collect();
    let revenue = currencies
        .iter()
        .map(|cur| {
            let get = |kind: &str| find(&format!("{kind}:{cur}"));
            let value = |kind: &str| get(kind).and_then(|k| k.value);
            let prev = |kind: &str| get(kind).and_then(|k| k.prev_value);
            Revenue {
                currency: cur.to_string(),
                revenue_minor: value("revenue_minor"),
                prev_revenue_minor: prev("revenue_minor"),
                purchasers: value("purchasers"),
                prev_purchasers: prev("purchasers"),
                arppu_minor: value("arppu_minor"),
                prev_arppu_minor: prev("arppu_minor"),
            }
        })
        .collect();
    (kpis, revenue)
}

/// Pivot cohort rows (latest cohort first) into a table with one column per offset.
fn cohort_table(rows: Vec<CohortCell>) -> (Vec<Cohort>, Vec<i64>) {
    let max_offset = rows.iter().map(|r| r.period_offset).max().unwrap_or(-1);
    let mut cohorts: Vec<Cohort> = Vec::new();
    for r in rows {
        if cohorts.last().map(|c| &c.cohort_start) != Some(&r.cohort_start) {
            cohorts.push(Cohort {
                cohort_start: r.cohort_start.clone(),
                cohort_size: r.cohort_size,
                cells: vec![None; (max_offset + 1) as usize],
            });
        }
        let cohort = cohorts.last_mut().expect("pushed above");
        cohort.cells[r.period_offset as usize] = Some(RetentionCell {
            retained: r.retained,
            rate: r.retention_rate,
            is_partial: r.is_partial,
        });
    }
    (cohorts, (0..=max_offset).collect())
}

/// Pivot revenue cohort rows (latest cohort first, then currency) into one row per cohort and
/// currency with one cell per offset.
fn revenue_cohort_table(rows: Vec<RevenueCohortRow>) -> (Vec<RevenueCohort>, Vec<i64>) {
    let max_offset = rows.iter().map(|r| r.period_offset).max().unwrap_or(-1);
    let mut cohorts: Vec<RevenueCohort> = Vec::new();
    for r in rows {
        if cohorts.last().map(|c| (&c.cohort_start, &c.currency))
            != Some((&r.cohort_start, &r.currency))
        {
            cohorts.push(RevenueCohort {
                cohort_start: r.cohort_start.clone(),
                currency: r.currency.clone(),
                cohort_size: r.cohort_size,
                cells: vec![None; (max_offset + 1) as usize],
            });
        }
        let cohort = cohorts.last_mut().expect("pushed above");
        cohort.cells[r.period_offset as usize] = Some(RevenueCell {
            paying: r.paying,
            paying_rate: r.paying_rate,
            net_revenue_minor: r.net_revenue_minor,
            revenue_retention: r.revenue_retention,
            is_partial: r.is_partial,
        });
    }
    (cohorts, (0..=max_offset).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohorts_pivot_with_gaps_for_periods_not_started() {
        let cell = |start: &str, k: i64, rate: f64| CohortCell {
            cohort_start: start.into(),
            period_offset: k,
            cohort_size: 10,
            retained: (rate * 10.0) as i64,
            retention_rate: rate,
            is_partial: false,
        };
        let (cohorts, offsets) = cohort_table(vec![
            cell("2026-11-01", 0, 1.0),
            cell("2026-10-01", 0, 1.0),
            cell("2026-10-01", 1, 0.5),
        ]);
        assert_eq!(offsets, [0, 1]);
        assert_eq!(cohorts.len(), 2);
        assert!(cohorts[0].cells[1].is_none());
        assert_eq!(cohorts[1].cells[1].as_ref().unwrap().retained, 5);
    }

    #[test]
    fn revenue_rows_per_currency() {
        let k = |m: &str, v: f64| Kpi {
            metric: m.into(),
            value: Some(v),
            prev_value: None,
        };
        let (kpis, revenue) = split_kpis(vec![
            k("members", 10.0),
            k("revenue_minor:CNY", 9900.0),
            k("purchasers:CNY", 2.0),
            k("arppu_minor:CNY", 4950.0),
        ]);
        assert_eq!(kpis.len(), 1);
        assert_eq!(revenue.len(), 1);
        assert_eq!(revenue[0].arppu_minor, Some(4950.0));
    }
}
