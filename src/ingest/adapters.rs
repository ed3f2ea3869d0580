//! Platform payloads → canonical events (SPEC §2). Each adapter returns the events of one
//! delivery, or says why it was ignored. Member ids are `<source name>:<platform user id>`
//! unless the identity map names the member they belong to; emails, names and usernames from
//! the payloads are never copied into events.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, value::RawValue, Map, Value};

use crate::error::{Error, IoContext, Result};

/// What one delivery produced.
#[derive(Debug)]
pub enum Mapped {
    Events(Vec<Map<String, Value>>),
    /// Understood and deliberately not stored (e.g. a ping or an event type we do not count).
    Ignored(String),
}

/// Aliases (`stripe:cus_123`, `forum:42`) → member ids: one person across platforms.
#[derive(Debug, Clone, Default)]
pub struct Identities(BTreeMap<String, String>);

impl Identities {
    /// From the config's inline table and an optional CSV file with columns `alias,member_id`.
    pub fn load(inline: &BTreeMap<String, String>, file: Option<&Path>) -> Result<Identities> {
        let mut map = inline.clone();
        if let Some(path) = file {
            let mut reader = csv::Reader::from_path(path).map_err(|e| Error::Input {
                path: path.to_path_buf(),
                message: format!("identity map: {e}"),
            })?;
            for (i, row) in reader.records().enumerate() {
                let row = row.map_err(|e| Error::Input {
                    path: path.to_path_buf(),
                    message: format!("identity map line {}: {e}", i + 2),
                })?;
                match (row.get(0), row.get(1)) {
                    (Some(alias), Some(member)) if !alias.is_empty() && !member.is_empty() => {
                        map.insert(alias.to_string(), member.to_string());
                    }
                    _ => {
                        return Err(Error::Input {
                            path: path.to_path_buf(),
                            message: format!(
                                "identity map line {}: expected alias,member_id",
                                i + 2
                            ),
                        })
                    }
                }
            }
        }
        Ok(Identities(map))
    }

    /// The member an alias belongs to (the alias itself when unmapped).
    pub fn member(&self, alias: &str) -> String {
        self.0
            .get(alias)
            .cloned()
            .unwrap_or_else(|| alias.to_string())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads the identity map file once.
pub fn read_identities(config: &crate::config::IngestConfig) -> Result<Identities> {
    if let Some(p) = &config.identities {
        std::fs::metadata(p).io_context(|| format!("ingest.identities: {}", p.display()))?;
    }
    Identities::load(&config.identity, config.identities.as_deref())
}

/// A JSON string (non-empty) or number as text: platform ids come as either.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A canonical event with the fields every adapter sets.
pub(crate) fn event(
    source: &str,
    community: &str,
    event_id: String,
    member: String,
    kind: &str,
    occurred_at: String,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("event_id".into(), event_id.into());
    m.insert("source".into(), source.into());
    m.insert("community_id".into(), community.into());
    m.insert("member_id".into(), member.into());
    m.insert("event_type".into(), kind.into());
    m.insert("occurred_at".into(), occurred_at.into());
    m
}

fn set(m: &mut Map<String, Value>, key: &str, value: Option<String>) {
    if let Some(v) = value {
        m.insert(key.into(), v.into());
    }
}

/// Discourse webhooks (`X-Discourse-Event` names the event). Content ids are
/// `t<topic>#<post number>`, so a reply's parent is the post it answers (or the topic's first
/// post) and demand's "answered" rule can follow it.
pub fn discourse(
    source: &str,
    community: &str,
    event_name: &str,
    payload: &Value,
    ids: &Identities,
) -> std::result::Result<Mapped, String> {
    let member = |user: &Value| text(user).map(|u| ids.member(&format!("{source}:{u}")));
    match event_name {
        "ping" => Ok(Mapped::Ignored("ping".into())),
        "post_created" | "accepted_solution" => {
            let p = &payload["post"];
            let topic = text(&p["topic_id"]).ok_or("post.topic_id missing")?;
            let number = p["post_number"]
                .as_i64()
                .ok_or("post.post_number missing")?;
            let author = member(&p["user_id"]).ok_or("post.user_id missing")?;
            let at = text(&p["created_at"]).ok_or("post.created_at missing")?;
            let content = format!("t{topic}#{number}");
            let parent = format!(
                "t{topic}#{}",
                p["reply_to_post_number"].as_i64().unwrap_or(1)
            );
            let mut e = if event_name == "accepted_solution" {
                let mut e = event(
                    source,
                    community,
                    format!("solution-{}", text(&p["id"]).unwrap_or_default()),
                    author,
                    "solution",
                    text(&p["updated_at"]).unwrap_or(at),
                );
                set(&mut e, "parent_id", Some(format!("t{topic}#1")));
                e
            } else if number == 1 {
                let mut e = event(
                    source,
                    community,
                    format!("post-{}", text(&p["id"]).unwrap_or_default()),
                    author,
                    "post",
                    at,
                );
                set(&mut e, "title", text(&p["topic_title"]));
                e
            } else {
                let mut e = event(
                    source,
                    community,
                    format!("post-{}", text(&p["id"]).unwrap_or_default()),
                    author,
                    "comment",
                    at,
                );
                set(&mut e, "parent_id", Some(parent));
                e
            };
            set(&mut e, "content_id", Some(content));
            if event_name == "post_created" {
                set(&mut e, "body", text(&p["raw"]));
            }
            e.insert(
                "properties".into(),
                json!({ "topic_id": p["topic_id"], "category_id": p["category_id"], "post_number": number }).to_string().into(),
            );
            Ok(Mapped::Events(vec![e]))
        }
        "topic_created" => Ok(Mapped::Ignored(
            "a topic's first post arrives as post_created, which is counted".into(),
        )),
        "user_created" => {
            let u = &payload["user"];
            let id = member(&u["id"]).ok_or("user.id missing")?;
            let at = text(&u["created_at"]).ok_or("user.created_at missing")?;
            let raw_id = text(&u["id"]).unwrap_or_default();
            Ok(Mapped::Events(vec![event(
                source,
                community,
                format!("user-{raw_id}"),
                id,
                "join",
                at,
            )]))
        }
        "post_liked" => {
            let like = &payload["like"];
            let p = &like["post"];
            let liker = member(&like["user"]["id"]).ok_or("like.user.id missing")?;
            let topic = text(&p["topic_id"]).ok_or("like.post.topic_id missing")?;
            let number = p["post_number"]
                .as_i64()
                .ok_or("like.post.post_number missing")?;
            let at = text(&like["created_at"])
                .or_else(|| text(&p["updated_at"]))
                .ok_or("like.created_at missing")?;
            let mut e = event(
                source,
                community,
                format!(
                    "like-{}-{}",
                    text(&p["id"]).unwrap_or_default(),
                    text(&like["user"]["id"]).unwrap_or_default()
                ),
                liker,
                "like",
                at,
            );
            set(&mut e, "content_id", Some(format!("t{topic}#{number}")));
            set(&mut e, "target_member_id", member(&p["user_id"]));
            Ok(Mapped::Events(vec![e]))
        }
        "user_badge_granted" => Ok(Mapped::Ignored("badges are not engagement events".into())),
        other => Ok(Mapped::Ignored(format!(
            "Discourse event `{other}` is not mapped"
        ))),
    }
}

/// Stripe events: payments → `purchase`, refunds → `refund`, a cancelled subscription → `leave`.
/// The member is the identity-mapped `stripe:<customer>`, or `metadata.member_id`, or
/// `client_reference_id` (what checkout pages pass for the signed-in user).
/// The display names a Discourse payload carries (`post.name` or `post.username` for
/// `post.user_id`, `user.name` or `user.username` for `user.id`), for the member directory:
/// they never reach the lake.
pub fn discourse_names(source: &str, payload: &Value, ids: &Identities) -> Vec<(String, String)> {
    let name_of = |v: &Value| {
        ["name", "username"]
            .iter()
            .filter_map(|k| v[*k].as_str())
            .map(str::trim)
            .find(|n| !n.is_empty())
            .map(str::to_string)
    };
    [(&payload["post"], "user_id"), (&payload["user"], "id")]
        .into_iter()
        .filter_map(|(object, id_key)| {
            let id = text(&object[id_key])?;
            Some((ids.member(&format!("{source}:{id}")), name_of(object)?))
        })
        .collect()
}

pub fn stripe(
    source: &str,
    community: &str,
    payload: &Value,
    ids: &Identities,
) -> std::result::Result<Mapped, String> {
    let kind = payload["type"].as_str().ok_or("no type")?;
    let obj = &payload["data"]["object"];
    let event_id = text(&payload["id"]).ok_or("no id")?;
    let created = payload["created"].as_i64().ok_or("no created")?;
    let at = chrono::DateTime::from_timestamp(created, 0)
        .ok_or("created is not a time")?
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let member = || -> std::result::Result<String, String> {
        if let Some(m) = text(&obj["metadata"]["member_id"]) {
            return Ok(m);
        }
        if let Some(c) = text(&obj["customer"]) {
            return Ok(ids.member(&format!("stripe:{c}")));
        }
        if let Some(r) = text(&obj["client_reference_id"]) {
            return Ok(ids.member(&r));
        }
        Err("no customer, metadata.member_id or client_reference_id to name the member".into())
    };
    let money = |amount: &Value| -> std::result::Result<(i64, String), String> {
        let a = amount.as_i64().ok_or("no amount")?;
        let c = obj["currency"]
            .as_str()
            .ok_or("no currency")?
            .to_ascii_uppercase();
        Ok((a, c))
    };
    let (event_type, amount) = match kind {
        "checkout.session.completed" => ("purchase", Some(money(&obj["amount_total"])?)),
        "invoice.paid" => ("purchase", Some(money(&obj["amount_paid"])?)),
        "charge.refunded" => ("refund", Some(money(&obj["amount_refunded"])?)),
        "customer.subscription.deleted" => ("leave", None),
        other => {
            return Ok(Mapped::Ignored(format!(
                "Stripe event `{other}` is not mapped"
            )))
        }
    };
    let mut e = event(source, community, event_id, member()?, event_type, at);
    if let Some((a, c)) = amount {
        e.insert("amount_minor".into(), a.into());
        e.insert("currency".into(), c.into());
    }
    // content_id is the product bought (SPEC §4.9: what a purchase buys, and which purchase a
    // refund cancels): the price, else the object's own id.
    set(
        &mut e,
        "content_id",
        stripe_price(obj).or_else(|| text(&obj["id"])),
    );
    let mut properties = json!({ "stripe_type": kind, "livemode": payload["livemode"] });
    if let Some(reason) = text(&obj["billing_reason"]) {
        // subscription_create (a first payment), subscription_cycle (a renewal), …
        properties["billing_reason"] = reason.into();
    }
    e.insert("properties".into(), properties.to_string().into());
    Ok(Mapped::Events(vec![e]))
}

/// The Stripe price a payment or refund is for, so that renewals of one plan share a product
/// (`membership.product_terms` keys): `metadata.price_id` when the sender sets it (charges and
/// refunds carry no line items), else the first invoice line's price (`price.id`, or
/// `pricing.price_details.price` in API versions from 2025), else the subscription plan.
fn stripe_price(obj: &Value) -> Option<String> {
    let line = &obj["lines"]["data"][0];
    text(&obj["metadata"]["price_id"])
        .or_else(|| text(&line["price"]["id"]))
        .or_else(|| text(&line["pricing"]["price_details"]["price"]))
        .or_else(|| text(&line["plan"]["id"]))
        .or_else(|| text(&obj["plan"]["id"]))
}

/// Canonical events: one JSON object, a JSON array of them, or NDJSON (`/v1/events` and the
/// `generic` and `standard_webhooks` endpoints), each as the sender's text: `POST /v1/events`
/// validates them without building a JSON tree. What the body says about `received_at` — and,
/// at an endpoint, about `source` — is overwritten by the server (SPEC §4.8).
pub fn canonical_raw(body: &[u8]) -> std::result::Result<Vec<&RawValue>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    let trimmed = text.trim_start();
    let values: Vec<&RawValue> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).map_err(|e| format!("invalid JSON: {e}"))?
    } else {
        let mut values = Vec::new();
        let mut stream = serde_json::Deserializer::from_str(trimmed).into_iter::<&RawValue>();
        for v in &mut stream {
            values.push(v.map_err(|e| format!("invalid JSON: {e}"))?);
        }
        values
    };
    for (i, v) in values.iter().enumerate() {
        if !v.get().starts_with('{') {
            return Err(format!("event {i} is not a JSON object"));
        }
    }
    Ok(values)
}

/// [`canonical_raw`]'s events as JSON objects, for the endpoints that rewrite fields.
pub fn canonical(body: &[u8]) -> std::result::Result<Vec<Map<String, Value>>, String> {
    canonical_raw(body)?
        .into_iter()
        .map(|v| serde_json::from_str(v.get()).map_err(|e| format!("invalid JSON: {e}")))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn discourse_first_post_is_a_post_without_personal_data() {
        let ids = Identities::default();
        let Mapped::Events(events) = discourse(
            "forum",
            "c1",
            "post_created",
            &fixture("discourse_post_created.json"),
            &ids,
        )
        .unwrap() else {
            panic!("ignored")
        };
        let e = &events[0];
        assert_eq!(e["event_type"], "post");
        assert_eq!(e["member_id"], "forum:1");
        assert_eq!(e["content_id"], "t10#1");
        assert!(e["title"].as_str().unwrap().starts_with("阿里云"));
        let all = serde_json::to_string(e).unwrap();
        assert!(!all.contains("user1"), "no username: {all}");
        let line = serde_json::to_string(&Value::Object(e.clone())).unwrap();
        crate::event::parse_json_line(&line).unwrap();
    }

    #[test]
    fn discourse_names_go_to_the_directory_not_the_events() {
        let ids = Identities::default();
        let payload = fixture("discourse_post_created.json");
        let names = discourse_names("forum", &payload, &ids);
        let post = &payload["post"];
        let expected = post["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .or(post["username"].as_str())
            .unwrap();
        assert_eq!(names, vec![("forum:1".to_string(), expected.to_string())]);
    }

    #[test]
    fn stripe_invoice_is_a_purchase_of_the_mapped_member() {
        let ids = Identities::load(
            &BTreeMap::from([("stripe:cus_QsYn1aSStYv4tf".to_string(), "u7".to_string())]),
            None,
        )
        .unwrap();
        let Mapped::Events(events) =
            stripe("pay", "c1", &fixture("stripe_invoice_paid.json"), &ids).unwrap()
        else {
            panic!("ignored")
        };
        let e = &events[0];
        assert_eq!(
            (e["event_type"].as_str(), e["member_id"].as_str()),
            (Some("purchase"), Some("u7"))
        );
        assert_eq!(
            (e["amount_minor"].as_i64(), e["currency"].as_str()),
            (Some(10800), Some("USD"))
        );
        assert!(!serde_json::to_string(e).unwrap().contains("alexanmtz"));
        // A one-off invoice line has no price: the invoice is the product.
        assert_eq!(
            e["content_id"].as_str(),
            Some("in_1Q2fh8BrSjgsps2DUqQsGLDj")
        );
        // A renewal (billing_reason subscription_cycle) is a purchase of its price, and says
        // why it was billed.
        let mut renewal = fixture("stripe_invoice_paid.json");
        renewal["data"]["object"]["billing_reason"] = "subscription_cycle".into();
        renewal["data"]["object"]["lines"]["data"][0]["price"] = json!({ "id": "price_monthly" });
        let Mapped::Events(events) = stripe("pay", "c1", &renewal, &ids).unwrap() else {
            panic!("ignored")
        };
        assert_eq!(events[0]["content_id"].as_str(), Some("price_monthly"));
        assert!(events[0]["properties"]
            .as_str()
            .unwrap()
            .contains(r#""billing_reason":"subscription_cycle""#));
        // A refund names the price it refunds through metadata.price_id.
        let refund = json!({
            "id": "evt_r", "type": "charge.refunded", "created": 1727211051, "livemode": false,
            "data": { "object": { "id": "ch_1", "customer": "cus_QsYn1aSStYv4tf", "amount_refunded": 900,
                "currency": "usd", "metadata": { "price_id": "price_monthly" } } }
        });
        let Mapped::Events(events) = stripe("pay", "c1", &refund, &ids).unwrap() else {
            panic!("ignored")
        };
        assert_eq!(
            (
                events[0]["event_type"].as_str(),
                events[0]["content_id"].as_str()
            ),
            (Some("refund"), Some("price_monthly"))
        );
        // A checkout without customer, metadata or reference cannot name a member.
        assert!(stripe(
            "pay",
            "c1",
            &fixture("stripe_checkout_session_completed.json"),
            &ids
        )
        .is_err());
    }

    #[test]
    fn canonical_bodies_in_three_shapes() {
        let one = br#"{"a":1}"#;
        let array = br#"[{"a":1},{"a":2}]"#;
        let ndjson = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n";
        assert_eq!(canonical(one).unwrap().len(), 1);
        assert_eq!(canonical(array).unwrap().len(), 2);
        assert_eq!(canonical(ndjson).unwrap().len(), 3);
        assert!(canonical(b"{nope").is_err());
        assert!(canonical(b"[1]").is_err());
    }

    /// The keys the adapters look for.
    const KEYS: &[&str] = &[
        "post",
        "topic_id",
        "post_number",
        "user_id",
        "created_at",
        "updated_at",
        "raw",
        "reply_to_post_number",
        "topic_title",
        "id",
        "like",
        "user",
        "type",
        "data",
        "object",
        "customer",
        "amount_total",
        "amount_paid",
        "amount_refunded",
        "currency",
        "metadata",
        "member_id",
        "client_reference_id",
        "created",
        "livemode",
        "category_id",
        // Slack Events API
        "event",
        "channel",
        "ts",
        "thread_ts",
        "item",
        "item_user",
        "reaction",
        "event_ts",
        "event_time",
        "event_id",
        "subtype",
        "bot_id",
        "text",
        "challenge",
        "parent_user_id",
        // Feishu
        "header",
        "event_type",
        "message",
        "message_id",
        "sender",
        "sender_id",
        "open_id",
        "content",
        "message_type",
        "parent_id",
        "root_id",
        "create_time",
        "users",
        "user_id",
        "reaction_type",
        "emoji_type",
        "action_time",
        // DingTalk robot
        "msgtype",
        "msgId",
        "senderStaffId",
        "senderId",
        "createAt",
        "isReplyMsg",
        "repliedMsg",
    ];

    /// A random JSON value built from the keys the adapters look for, so random inputs reach
    /// deep into the mapping code.
    fn random_value(rng: &mut impl rand::Rng, depth: u32) -> Value {
        match rng.gen_range(0..if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.gen()),
            2 => json!(rng.gen_range(-5i64..2_000_000_000)),
            3 => {
                json!(["2026-11-23T09:00:00Z", "", "abc", "usd", "1.5", "💥"][rng.gen_range(0..6)])
            }
            4 => json!(rng.gen::<f64>() * 1e6),
            5 => Value::Array(
                (0..rng.gen_range(0..3))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..rng.gen_range(0..6))
                    .map(|_| {
                        (
                            KEYS[rng.gen_range(0..KEYS.len())].to_string(),
                            random_value(rng, depth - 1),
                        )
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn adapters_never_panic_and_what_they_map_validates_or_is_rejected() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let ids = Identities::default();
        let fixtures: Vec<Vec<u8>> = [
            "discourse_post_created.json",
            "stripe_invoice_paid.json",
            "stripe_checkout_session_completed.json",
        ]
        .iter()
        .map(|f| {
            std::fs::read(format!("{}/tests/fixtures/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        })
        .collect();
        for round in 0..3000 {
            let payload = if round % 2 == 0 {
                random_value(&mut rng, 4)
            } else {
                // A real payload with random bytes flipped or cut short.
                let mut bytes = fixtures[round % fixtures.len()].clone();
                for _ in 0..rng.gen_range(0..4) {
                    let i = rng.gen_range(0..bytes.len());
                    bytes[i] = rng.gen();
                }
                bytes.truncate(rng.gen_range(0..=bytes.len()));
                let _ = canonical(&bytes);
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            let mut results = vec![stripe("pay", "c1", &payload, &ids)];
            for event in [
                "post_created",
                "accepted_solution",
                "user_created",
                "post_liked",
                "topic_created",
                "ping",
            ] {
                results.push(discourse("forum", "c1", event, &payload, &ids));
            }
            for mapped in results.into_iter().flatten() {
                if let Mapped::Events(events) = mapped {
                    for e in events {
                        let _ = crate::event::parse_json_line(&Value::Object(e).to_string());
                    }
                }
            }
        }
    }

    /// Property tests (proptest, a bounded number of cases so they run in seconds): any JSON
    /// built from the adapters' keys, and any bytes, are mapped or refused, never a panic.
    pub(crate) mod properties {
        use super::*;
        use proptest::prelude::*;

        pub fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                any::<f64>().prop_map(|f| json!(f)),
                prop::sample::select(vec![
                    "2026-11-23T09:00:00Z",
                    "",
                    "usd",
                    "💥",
                    "9999-99-99T99:99:99Z",
                    "-1",
                    "1736554636.80791é",
                ])
                .prop_map(|s| json!(s)),
                ".{0,12}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 64, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(
                        |pairs| Value::Object(
                            pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                        )
                    ),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn every_adapter_maps_or_refuses_any_json(
                payload in json(),
                event in prop::sample::select(vec![
                    "post_created", "accepted_solution", "user_created", "post_liked",
                    "topic_created", "ping", "",
                ]),
            ) {
                let ids = Identities::default();
                let mut results = vec![
                    stripe("pay", "c1", &payload, &ids),
                    discourse("forum", "c1", event, &payload, &ids),
                ];
                let text = payload.to_string();
                if let Ok(events) = canonical(text.as_bytes()) {
                    results.push(Ok(Mapped::Events(events)));
                }
                for mapped in results.into_iter().flatten() {
                    if let Mapped::Events(events) = mapped {
                        for e in events {
                            let _ = crate::event::parse_json_line(&Value::Object(e).to_string());
                        }
                    }
                }
            }

            #[test]
            fn canonical_refuses_any_bytes_without_panicking(
                bytes in prop::collection::vec(any::<u8>(), 0..512),
            ) {
                let _ = canonical(&bytes);
            }
        }
    }
}
