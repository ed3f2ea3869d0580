//! `pulse generate`: a realistic synthetic community as canonical NDJSON.
//!
//! Deterministic for a given seed and end date. What it models, per community:
//! - members join over the period (a launch cohort first, then steady growth); ~10% never send
//!   a `join` (imported from an older system), so their first event is activity;
//! - heavy-tailed activity: each member's daily activity probability follows a Pareto law, so a
//!   few members do most of the posting (as in every real forum);
//! - churn: each member has an exponential lifetime; a third of churners send `leave`, a few
//!   come back and `join` again;
//! - posts in Chinese or English built from the demand taxonomies' keywords (some on no
//!   category); comments answer recent posts of other members (popular posts attract more; some
//!   posts are never answered); likes, shares and cites point at real content and its author;
//!   some answers are accepted as `solution`s;
//! - daily check-ins (打卡), weekly live sessions (`attend`), `view`s; paying members buy an
//!   `annual` or a `monthly` plan (the purchase's content_id) at join, and every 30 days buy
//!   the monthly plan again or let it lapse; refunds of a few purchases; rare moderation
//!   (report, warn, ban, unban).

use std::io::Write;

use chrono::{Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::{default_taxonomies, Taxonomy};
use crate::error::{IoContext, Result};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Members per community.
    pub members: u32,
    pub days: u32,
    pub communities: u32,
    pub seed: u64,
    /// The last generated day is the day before this date (so a run `--as-of end` sees it all).
    pub end: NaiveDate,
}

/// Shape of the built-in communities: (id, IANA timezone, Chinese text share, currency, price).
const COMMUNITIES: &[(&str, &str, f64, &str, i64)] = &[
    ("python-camp", "Asia/Shanghai", 0.85, "CNY", 19_900),
    ("data-circle", "America/New_York", 0.1, "USD", 4_900),
    ("ai-builders", "Europe/Berlin", 0.2, "EUR", 2_900),
    ("growth-lab", "Asia/Singapore", 0.5, "SGD", 3_900),
];

/// `(id, timezone)` of community `i` (ids repeat with a suffix past the built-in list).
pub fn community_shape(i: u32) -> (String, Tz) {
    let (id, tz, ..) = COMMUNITIES[i as usize % COMMUNITIES.len()];
    let id = if (i as usize) < COMMUNITIES.len() {
        id.to_string()
    } else {
        format!("{id}-{}", i as usize / COMMUNITIES.len() + 1)
    };
    (id, tz.parse().expect("built-in timezone"))
}

#[derive(Serialize)]
struct Line<'a> {
    event_id: &'a str,
    source: &'a str,
    community_id: &'a str,
    member_id: &'a str,
    event_type: &'a str,
    occurred_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_member_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<&'a str>,
}

/// One event before serialization; `second` is seconds after local midnight of its day.
struct Draft {
    second: u32,
    member: u32,
    kind: &'static str,
    content_id: Option<String>,
    parent_id: Option<String>,
    target: Option<u32>,
    title: Option<String>,
    body: Option<String>,
    amount: Option<i64>,
    properties: Option<&'static str>,
}

impl Draft {
    fn new(second: u32, member: u32, kind: &'static str) -> Draft {
        Draft {
            second,
            member,
            kind,
            content_id: None,
            parent_id: None,
            target: None,
            title: None,
            body: None,
            amount: None,
            properties: None,
        }
    }
}

struct Member {
    join_day: i64,
    sends_join: bool,
    /// Probability of being active on a day while a member.
    activity: f64,
    leave_day: i64,
    sends_leave: bool,
    rejoin_day: Option<i64>,
    paid: bool,
    banned_until: Option<i64>,
}

/// A paying member's plan — (product, price, properties): every third an annual plan at the
/// community's price, the others a monthly plan at a tenth of it. The product is the
/// purchase's `content_id`, so `membership.product_terms = { "monthly" = 30 }` gives the
/// monthly plan its term (the demo's config does).
fn plan(member: u32, price: i64) -> (&'static str, i64, &'static str) {
    if member.is_multiple_of(3) {
        ("annual", price, r#"{"plan":"annual"}"#)
    } else {
        ("monthly", price / 10, r#"{"plan":"monthly"}"#)
    }
}

/// Content others can react to.
#[derive(Clone)]
struct Content {
    id: String,
    author: u32,
    is_post: bool,
    /// How attractive: popular posts get more answers and likes.
    appeal: f64,
    /// When it was created: (day, second of that day).
    created: (i64, u32),
}

impl Content {
    /// A reaction at `t` on `day`, moved after the content's creation when both are on that day.
    fn react_at(&self, day: i64, t: u32) -> u32 {
        if self.created.0 == day {
            t.max(self.created.1 + 60).min(86_399)
        } else {
            t
        }
    }
}

/// Write the synthetic events to `out`; returns how many were written.
pub fn generate(options: &GenerateOptions, out: &mut impl Write) -> Result<u64> {
    let taxonomies = default_taxonomies();
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let start = options.end - Duration::days(options.days as i64);
    let mut states: Vec<CommunityState> = (0..options.communities)
        .map(|i| CommunityState::new(i, options, &mut rng))
        .collect();
    let mut written = 0u64;
    let mut buf = Vec::with_capacity(1 << 20);
    for day in 0..options.days as i64 {
        let date = start + Duration::days(day);
        for state in &mut states {
            let mut drafts = state.day(day, &taxonomies, &mut rng);
            drafts.sort_by_key(|d| d.second);
            for d in drafts {
                state.write(&d, date, &mut buf)?;
                written += 1;
            }
            if buf.len() > (1 << 20) - 4096 {
                out.write_all(&buf)
                    .io_context(|| "writing generated events".into())?;
                buf.clear();
            }
        }
    }
    out.write_all(&buf)
        .io_context(|| "writing generated events".into())?;
    Ok(written)
}

struct CommunityState {
    id: String,
    tz: Tz,
    chinese: f64,
    currency: &'static str,
    price: i64,
    members: Vec<Member>,
    recent: Vec<Content>,
    next_id: u64,
    member_ids: Vec<String>,
    events_written: u64,
    /// Days generated in all.
    days: i64,
}

/// A post topic outside the configured taxonomies: (title, body) in Chinese and English, and
/// the quarter of the generated span from which members write about it. None of the texts
/// contains a keyword of the default taxonomies (a unit test holds them to that).
struct OffTopic {
    from_quarter: i64,
    zh: (&'static str, &'static str),
    en: (&'static str, &'static str),
}

const OFF_TAXONOMY: [OffTopic; 5] = [
    OffTopic {
        from_quarter: 0,
        zh: ("大家周末愉快", "今天天气不错，大家在忙什么？"),
        en: ("Happy Friday", "What is everyone up to this weekend?"),
    },
    OffTopic {
        from_quarter: 0,
        zh: (
            "用pandas做数据清洗",
            "数据清洗的时候缺失值大家一般怎么处理？",
        ),
        en: (
            "Cleaning data with pandas",
            "How do you handle missing values when cleaning data with pandas?",
        ),
    },
    OffTopic {
        from_quarter: 1,
        zh: (
            "类型注解写起来好麻烦",
            "Python的类型注解和mypy，大家项目里用吗？",
        ),
        en: (
            "Type hints with mypy",
            "Do you use type hints and mypy in your projects?",
        ),
    },
    OffTopic {
        from_quarter: 2,
        zh: (
            "大模型微调用什么显卡",
            "想用LoRA微调一个大模型，显卡显存要多大？",
        ),
        en: (
            "Fine-tuning an LLM with LoRA",
            "What GPU do I need to fine-tune an LLM with LoRA?",
        ),
    },
    OffTopic {
        from_quarter: 3,
        zh: (
            "向量数据库怎么选",
            "做RAG检索增强，向量数据库选Milvus还是Chroma？",
        ),
        en: (
            "Choosing a vector database for RAG",
            "Milvus or Chroma for a RAG prototype? Which vector database do you use?",
        ),
    },
];

impl CommunityState {
    fn new(index: u32, o: &GenerateOptions, rng: &mut ChaCha8Rng) -> CommunityState {
        let (id, tz) = community_shape(index);
        let (_, _, chinese, currency, price) = COMMUNITIES[index as usize % COMMUNITIES.len()];
        let days = o.days.max(1) as i64;
        let members = (0..o.members)
            .map(|_| {
                let join_day = if rng.gen_bool(0.25) {
                    rng.gen_range(0..days.min(7))
                } else {
                    rng.gen_range(0..days)
                };
                // Pareto(α = 1.3) activity, capped: most members lurk, a few are there daily.
                let pareto = (1.0 - rng.gen::<f64>()).powf(-1.0 / 1.3);
                let activity = (0.04 * pareto).min(0.95);
                let lifetime = (-rng.gen::<f64>().max(1e-9).ln() * 90.0) as i64 + 3;
                let leave_day = join_day + lifetime;
                Member {
                    join_day,
                    sends_join: rng.gen_bool(0.9),
                    activity,
                    leave_day,
                    sends_leave: rng.gen_bool(0.35),
                    rejoin_day: rng.gen_bool(0.08).then(|| leave_day + rng.gen_range(7..60)),
                    paid: rng.gen_bool(0.4),
                    banned_until: None,
                }
            })
            .collect();
        let member_ids = (0..o.members).map(|m| format!("u{m:06}")).collect();
        CommunityState {
            id,
            tz,
            chinese,
            currency,
            price,
            members,
            recent: Vec::new(),
            next_id: 0,
            member_ids,
            events_written: 0,
            days,
        }
    }

    fn content_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    fn is_member(&self, m: &Member, day: i64) -> bool {
        let first_stint = day >= m.join_day && day < m.leave_day;
        let second_stint = m.rejoin_day.is_some_and(|r| day >= r);
        (first_stint || second_stint) && m.banned_until.is_none_or(|b| day >= b)
    }

    /// Pick recent content, weighted by appeal; None when there is nothing to react to.
    fn pick(&self, rng: &mut ChaCha8Rng, posts_only: bool, not_by: u32) -> Option<Content> {
        for _ in 0..8 {
            let c = self
                .recent
                .get(rng.gen_range(0..self.recent.len().max(1)))?;
            if (!posts_only || c.is_post) && c.author != not_by && rng.gen_bool(c.appeal) {
                return Some(c.clone());
            }
        }
        None
    }

    fn day(&mut self, day: i64, taxonomies: &[Taxonomy], rng: &mut ChaCha8Rng) -> Vec<Draft> {
        let mut drafts = Vec::new();
        let second = |rng: &mut ChaCha8Rng| -> u32 {
            // Busy evenings: two thirds of activity between 18:00 and 24:00 local.
            if rng.gen_bool(0.66) {
                rng.gen_range(64_800..86_400)
            } else {
                rng.gen_range(21_600..86_400)
            }
        };
        let live_session = day % 7 == 3;
        let live_id = format!("live-{}", day / 7);
        for m in 0..self.members.len() as u32 {
            let member = &self.members[m as usize];
            let (join_day, sends_join, activity, paid) = (
                member.join_day,
                member.sends_join,
                member.activity,
                member.paid,
            );
            let (leave_day, sends_leave, rejoin_day) =
                (member.leave_day, member.sends_leave, member.rejoin_day);
            let joining = day == join_day || rejoin_day == Some(day);
            if joining {
                let t = rng.gen_range(0..86_400);
                if sends_join {
                    drafts.push(Draft::new(t, m, "join"));
                }
                if paid {
                    let (product, amount, properties) = plan(m, self.price);
                    let mut d = Draft::new((t + 1).min(86_399), m, "purchase");
                    d.amount = Some(amount);
                    d.content_id = Some(product.to_string());
                    d.properties = Some(properties);
                    if rng.gen_bool(0.04) {
                        let mut r = Draft::new((t + 3600).min(86_399), m, "refund");
                        r.amount = Some(amount);
                        r.content_id = d.content_id.clone();
                        drafts.push(r);
                    }
                    drafts.push(d);
                }
            }
            if day == leave_day && sends_leave {
                drafts.push(Draft::new(rng.gen_range(0..86_400), m, "leave"));
            }
            if !self.is_member(&self.members[m as usize], day) {
                continue;
            }
            // Renewals: every 30 days since joining, a paying member buys the monthly plan
            // again, or not (a lapse; they may come back a term later). Annual members doing so
            // renew early. (Renewal times are drawn where they always were, so the rest of the
            // generated community stays the same for a seed.)
            if paid && day > join_day && (day - join_day) % 30 == 0 && rng.gen_bool(0.5) {
                let (_, amount, properties) = plan(1, self.price);
                let mut d = Draft::new(rng.gen_range(0..86_400), m, "purchase");
                d.amount = Some(amount);
                d.content_id = Some("monthly".to_string());
                d.properties = Some(properties);
                drafts.push(d);
            }
            if !rng.gen_bool(activity) {
                continue;
            }
            let actions = 1 + (rng.gen::<f64>().powi(3) * 8.0) as u32;
            for _ in 0..actions {
                let t = second(rng);
                let roll: f64 = rng.gen();
                if roll < 0.10 {
                    let (title, body) = self.post_text(taxonomies, day, m, rng);
                    let id = self.content_id("p");
                    let mut d = Draft::new(t, m, "post");
                    d.content_id = Some(id.clone());
                    d.title = Some(title);
                    d.body = Some(body);
                    drafts.push(d);
                    self.remember(Content {
                        id,
                        author: m,
                        is_post: true,
                        appeal: rng.gen_range(0.05..1.0),
                        created: (day, t),
                    });
                } else if roll < 0.32 {
                    let Some(post) = self.pick(rng, true, m) else {
                        continue;
                    };
                    let t = post.react_at(day, t);
                    let id = self.content_id("c");
                    let mut d = Draft::new(t, m, "comment");
                    d.content_id = Some(id.clone());
                    d.parent_id = Some(post.id.clone());
                    d.target = (!d.second.is_multiple_of(3)).then_some(post.author);
                    d.body = Some(if rng.gen_bool(self.chinese) {
                        "试试这个方法，我之前也遇到过".into()
                    } else {
                        "Try this, it worked for me".into()
                    });
                    drafts.push(d);
                    if rng.gen_bool(0.12) {
                        let mut s = Draft::new((t + 600).min(86_399), m, "solution");
                        s.content_id = Some(id.clone());
                        s.parent_id = Some(post.id);
                        s.target = Some(post.author);
                        drafts.push(s);
                    }
                    self.remember(Content {
                        id,
                        author: m,
                        is_post: false,
                        appeal: 0.3,
                        created: (day, t),
                    });
                } else if roll < 0.64 {
                    let kind = match rng.gen_range(0..20) {
                        0..=14 => "like",
                        15..=17 => "share",
                        _ => "cite",
                    };
                    let Some(c) = self.pick(rng, false, m) else {
                        continue;
                    };
                    let mut d = Draft::new(c.react_at(day, t), m, kind);
                    d.content_id = Some(c.id);
                    // Like chat platforms' reactions (the message, not its author), a third
                    // name no target: the models credit the content's author (SPEC §2). Chosen
                    // by the second of the day, not the rng, so the rest of the data stays put.
                    d.target = (!d.second.is_multiple_of(3)).then_some(c.author);
                    drafts.push(d);
                } else if roll < 0.78 {
                    drafts.push(Draft::new(t.min(36_000), m, "checkin"));
                } else if roll < 0.85 && live_session {
                    let mut d = Draft::new(72_000, m, "attend");
                    d.content_id = Some(live_id.clone());
                    drafts.push(d);
                } else if roll < 0.999 {
                    let Some(c) = self.pick(rng, false, u32::MAX) else {
                        continue;
                    };
                    let mut d = Draft::new(c.react_at(day, t), m, "view");
                    d.content_id = Some(c.id);
                    drafts.push(d);
                } else {
                    // Moderation: someone reports a post; its author is warned, sometimes banned.
                    let Some(c) = self.pick(rng, true, m) else {
                        continue;
                    };
                    let t = c.react_at(day, t).min(84_000);
                    let mut d = Draft::new(t, m, "report");
                    d.content_id = Some(c.id);
                    d.target = Some(c.author);
                    drafts.push(d);
                    drafts.push(Draft::new((t + 900).min(86_399), c.author, "warn"));
                    if rng.gen_bool(0.3) {
                        drafts.push(Draft::new((t + 1800).min(86_399), c.author, "ban"));
                        let until = day + rng.gen_range(3..30);
                        self.members[c.author as usize].banned_until = Some(until);
                    }
                }
            }
        }
        // Unbans happen at the start of the day the ban ends.
        for m in 0..self.members.len() as u32 {
            if self.members[m as usize].banned_until == Some(day) {
                drafts.push(Draft::new(rng.gen_range(0..3600), m, "unban"));
            }
        }
        drafts
    }

    fn remember(&mut self, c: Content) {
        const KEEP: usize = 400;
        if self.recent.len() >= KEEP {
            self.recent.remove(0);
        }
        self.recent.push(c);
    }

    /// A post's title and body: mostly about a keyword of a configured category; some (12%)
    /// about a topic no keyword covers ([`OFF_TAXONOMY`]), picked by member and day without a
    /// draw from `rng`, so the texts change nothing else that is generated.
    fn post_text(
        &self,
        taxonomies: &[Taxonomy],
        day: i64,
        member: u32,
        rng: &mut ChaCha8Rng,
    ) -> (String, String) {
        let chinese = rng.gen_bool(self.chinese);
        if rng.gen_bool(0.12) || taxonomies.is_empty() {
            // Topics enter the conversation in quarters of the generated span: the last ones
            // are new in the latest window (emerging topics with growth).
            let open: Vec<&OffTopic> = OFF_TAXONOMY
                .iter()
                .filter(|t| day * 4 >= self.days * t.from_quarter)
                .collect();
            let topic = open[(member as usize + day as usize) % open.len()];
            let (title, body) = if chinese { topic.zh } else { topic.en };
            return (title.into(), body.into());
        }
        let taxonomy = &taxonomies[rng.gen_range(0..taxonomies.len())];
        let category = &taxonomy.categories[rng.gen_range(0..taxonomy.categories.len())];
        // Keywords of the right script for the post's language (ASCII = English).
        let fitting: Vec<&String> = category
            .keywords
            .iter()
            .filter(|k| k.is_ascii() != chinese)
            .collect();
        let keyword = if fitting.is_empty() {
            &category.keywords[0]
        } else {
            fitting[rng.gen_range(0..fitting.len())]
        };
        if chinese {
            (
                format!("关于{keyword}，想请教一下"),
                format!("最近在看{keyword}相关的内容，大家有什么建议？"),
            )
        } else {
            let title = match rng.gen_range(0..3) {
                0 => format!("Question about {keyword}"),
                1 => format!("{keyword}: what worked for you?"),
                _ => format!("Thoughts on {keyword}"),
            };
            (
                title,
                format!("I have been looking into {keyword} lately. Any pointers?"),
            )
        }
    }

    fn write(&mut self, d: &Draft, date: NaiveDate, buf: &mut Vec<u8>) -> Result<()> {
        let local =
            date.and_hms_opt(0, 0, 0).expect("midnight") + Duration::seconds(d.second as i64);
        let at = self
            .tz
            .from_local_datetime(&local)
            .earliest()
            .unwrap_or_else(|| self.tz.from_utc_datetime(&local)); // a DST gap: shift
        let occurred_at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.events_written += 1;
        let event_id = format!("{}-{}", self.id, self.events_written);
        let target = d.target.map(|t| self.member_ids[t as usize].as_str());
        let money = d.amount.is_some();
        let line = Line {
            event_id: &event_id,
            source: "generic",
            community_id: &self.id,
            member_id: &self.member_ids[d.member as usize],
            event_type: d.kind,
            occurred_at: &occurred_at,
            content_id: d.content_id.as_deref(),
            parent_id: d.parent_id.as_deref(),
            target_member_id: target,
            title: d.title.as_deref(),
            body: d.body.as_deref(),
            amount_minor: d.amount,
            currency: money.then_some(self.currency),
            properties: d.properties,
        };
        serde_json::to_writer(&mut *buf, &line)?;
        buf.push(b'\n');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The off-taxonomy posts stay uncategorized under the default taxonomies, so adding them
    /// moved no demand number.
    #[test]
    fn off_taxonomy_topics_contain_no_default_keyword() {
        let keywords: Vec<String> = crate::config::default_taxonomies()
            .iter()
            .flat_map(|t| t.categories.iter().flat_map(|c| c.keywords.iter()))
            .map(|k| k.to_lowercase())
            .collect();
        for topic in &OFF_TAXONOMY {
            for (title, body) in [topic.zh, topic.en] {
                let text = format!("{title} {body}").to_lowercase();
                assert!(
                    keywords.iter().all(|k| !text.contains(k.as_str())),
                    "{text}"
                );
            }
        }
    }
}
