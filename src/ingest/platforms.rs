//! Live platform callbacks → canonical events: the Slack Events API here, WeCom in
//! [`super::wecom`], Feishu in [`super::feishu`], DingTalk in [`super::dingtalk`]. Member ids
//! are `<source name>:<platform user id>` mapped through the identity map; names, avatars and
//! phone numbers in the payloads are copied nowhere (names go to the member directory).

use serde_json::{json, Value};

use super::adapters::{event, text, Identities, Mapped};

/// Slack `ts` ("1355517523.000005") as RFC 3339 with microseconds.
pub(crate) fn slack_time(ts: &str) -> Option<String> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || secs.len() > 12 || !digits(secs) || !digits(frac) {
        return None;
    }
    let micros: u32 = format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?;
    chrono::DateTime::from_timestamp(secs.parse().ok()?, micros * 1000)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// Unix seconds as RFC 3339.
pub(crate) fn unix_time(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// What a Slack request asks for once its signature is verified.
#[derive(Debug)]
pub enum SlackRequest {
    /// `url_verification`: answer the challenge.
    Challenge(String),
    Mapped(Mapped),
}

/// A Slack Events API delivery. Event ids are those of the Slack export importer
/// (`<channel>:<ts>` for messages, `<channel>:<ts>:react:<emoji>:<user>` for reactions) and
/// Slack's `event_id` for joins and leaves: all the same on every retry
/// (`X-Slack-Retry-Num`), so a retried delivery is stored once.
pub fn slack(
    source: &str,
    community: &str,
    payload: &Value,
    ids: &Identities,
) -> std::result::Result<SlackRequest, String> {
    let member = |user: &Value| text(user).map(|u| ids.member(&format!("{source}:{u}")));
    match payload["type"].as_str() {
        Some("url_verification") => {
            return text(&payload["challenge"])
                .map(SlackRequest::Challenge)
                .ok_or_else(|| "url_verification without a challenge".into())
        }
        Some("event_callback") => {}
        Some(other) => {
            return Ok(SlackRequest::Mapped(Mapped::Ignored(format!(
                "Slack request type `{other}` is not mapped"
            ))))
        }
        None => return Err("no type".into()),
    }
    let e = &payload["event"];
    let kind = e["type"].as_str().ok_or("event.type missing")?;
    let properties = |extra: Value| {
        let mut p = json!({ "slack_type": kind, "team_id": payload["team_id"] });
        if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
            p.extend(extra);
        }
        p.to_string()
    };
    let mapped = match kind {
        "message" => {
            let subtype = e["subtype"].as_str().unwrap_or("");
            if !matches!(subtype, "" | "thread_broadcast" | "file_share") {
                return Ok(SlackRequest::Mapped(Mapped::Ignored(format!(
                    "Slack message subtype `{subtype}` is not counted"
                ))));
            }
            if e.get("bot_id").is_some_and(|b| !b.is_null()) {
                return Ok(SlackRequest::Mapped(Mapped::Ignored(
                    "messages of bots are not counted".into(),
                )));
            }
            let channel = text(&e["channel"]).ok_or("event.channel missing")?;
            let ts = text(&e["ts"]).ok_or("event.ts missing")?;
            let at = slack_time(&ts).ok_or("event.ts is not a Slack timestamp")?;
            let author = member(&e["user"]).ok_or("event.user missing")?;
            let id = format!("{channel}:{ts}");
            let parent = text(&e["thread_ts"]).filter(|t| *t != ts);
            let kind = if parent.is_some() { "comment" } else { "post" };
            let mut m = event(source, community, id.clone(), author, kind, at);
            m.insert("content_id".into(), id.into());
            if let Some(p) = parent {
                m.insert("parent_id".into(), format!("{channel}:{p}").into());
                if let Some(t) = member(&e["parent_user_id"]) {
                    m.insert("target_member_id".into(), t.into());
                }
            }
            if let Some(body) = text(&e["text"]) {
                m.insert("body".into(), body.into());
            }
            m.insert(
                "properties".into(),
                properties(json!({ "channel": channel })).into(),
            );
            vec![m]
        }
        "reaction_added" => {
            let item = &e["item"];
            if item["type"].as_str() != Some("message") {
                return Ok(SlackRequest::Mapped(Mapped::Ignored(
                    "reactions to files are not counted".into(),
                )));
            }
            let channel = text(&item["channel"]).ok_or("event.item.channel missing")?;
            let ts = text(&item["ts"]).ok_or("event.item.ts missing")?;
            let user = text(&e["user"]).ok_or("event.user missing")?;
            let emoji = text(&e["reaction"]).ok_or("event.reaction missing")?;
            let at = text(&e["event_ts"])
                .and_then(|t| slack_time(&t))
                .or_else(|| payload["event_time"].as_i64().and_then(unix_time))
                .ok_or("event.event_ts missing")?;
            let content = format!("{channel}:{ts}");
            let mut m = event(
                source,
                community,
                format!("{content}:react:{emoji}:{user}"),
                ids.member(&format!("{source}:{user}")),
                "like",
                at,
            );
            m.insert("content_id".into(), content.into());
            // No item_user (a message of an integration): left null, the models resolve it.
            if let Some(t) = member(&e["item_user"]) {
                m.insert("target_member_id".into(), t.into());
            }
            m.insert(
                "properties".into(),
                properties(json!({ "channel": channel, "reaction": emoji })).into(),
            );
            vec![m]
        }
        "member_joined_channel" | "member_left_channel" => {
            let user = member(&e["user"]).ok_or("event.user missing")?;
            let channel = text(&e["channel"]).ok_or("event.channel missing")?;
            let at = text(&e["event_ts"])
                .and_then(|t| slack_time(&t))
                .or_else(|| payload["event_time"].as_i64().and_then(unix_time))
                .ok_or("event_time missing")?;
            let id = text(&payload["event_id"]).ok_or("event_id missing")?;
            let kind = if kind == "member_joined_channel" {
                "join"
            } else {
                "leave"
            };
            let mut m = event(source, community, id, user, kind, at);
            m.insert(
                "properties".into(),
                properties(json!({ "channel": channel })).into(),
            );
            vec![m]
        }
        other => {
            return Ok(SlackRequest::Mapped(Mapped::Ignored(format!(
                "Slack event `{other}` is not mapped"
            ))))
        }
    };
    Ok(SlackRequest::Mapped(Mapped::Events(mapped)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    pub(crate) fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn events(name: &str, ids: &Identities) -> Vec<Value> {
        match slack("chat", "c1", &fixture(name), ids).unwrap() {
            SlackRequest::Mapped(Mapped::Events(events)) => events
                .into_iter()
                .map(|e| {
                    // Every mapped event is a valid canonical event once the server stamps it.
                    let mut stamped = e.clone();
                    stamped.insert("received_at".into(), "2026-11-30T00:00:00Z".into());
                    crate::event::parse_json_line(&Value::Object(stamped).to_string()).unwrap();
                    Value::Object(e)
                })
                .collect(),
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn slack_documented_payloads_map_to_canonical_events() {
        let ids = Identities::load(
            &BTreeMap::from([("chat:U222222222".to_string(), "u2".to_string())]),
            None,
        )
        .unwrap();
        match slack("chat", "c1", &fixture("slack/url_verification.json"), &ids).unwrap() {
            SlackRequest::Challenge(c) => {
                assert_eq!(c, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
            }
            other => panic!("{other:?}"),
        }
        let post = &events("slack/message.json", &ids)[0];
        assert_eq!(
            (
                &post["event_id"],
                &post["member_id"],
                &post["event_type"],
                &post["occurred_at"],
                &post["content_id"],
                &post["body"],
            ),
            (
                &json!("C123ABC456:1355517523.000005"),
                &json!("chat:U123ABC456"),
                &json!("post"),
                &json!("2012-12-14T20:38:43.000005Z"),
                &json!("C123ABC456:1355517523.000005"),
                &json!("Live long and prospect."),
            )
        );
        assert_eq!(post["source"], "chat");
        let reply = &events("slack/thread_reply.json", &ids)[0];
        assert_eq!(
            (
                &reply["event_type"],
                &reply["member_id"],
                &reply["parent_id"],
                &reply["target_member_id"]
            ),
            (
                &json!("comment"),
                &json!("u2"),
                &json!("C123ABC456:1355517523.000005"),
                &json!("chat:U123ABC456")
            )
        );
        let like = &events("slack/reaction_added.json", &ids)[0];
        assert_eq!(
            (
                &like["event_id"],
                &like["event_type"],
                &like["member_id"],
                &like["content_id"],
                &like["target_member_id"],
                &like["occurred_at"],
            ),
            (
                &json!("C123ABC456:1360782400.498405:react:thumbsup:U123ABC456"),
                &json!("like"),
                &json!("chat:U123ABC456"),
                &json!("C123ABC456:1360782400.498405"),
                &json!("u2"),
                &json!("2013-02-13T19:13:24.083113Z"),
            )
        );
        let join = &events("slack/member_joined_channel.json", &ids)[0];
        assert_eq!(
            (&join["event_id"], &join["event_type"], &join["member_id"]),
            (
                &json!("Ev0PV52K25"),
                &json!("join"),
                &json!("chat:W123ABC456")
            )
        );
        assert_eq!(join["occurred_at"], "2018-05-01T22:52:09Z");
        let leave = &events("slack/member_left_channel.json", &ids)[0];
        assert_eq!(
            (&leave["event_type"], &leave["member_id"]),
            (&json!("leave"), &json!("chat:W123ABC456"))
        );
        // A reaction to a message without an author (an integration's): no target.
        let mut anonymous = fixture("slack/reaction_added.json");
        anonymous["event"]
            .as_object_mut()
            .unwrap()
            .remove("item_user");
        let Ok(SlackRequest::Mapped(Mapped::Events(e))) = slack("chat", "c1", &anonymous, &ids)
        else {
            panic!()
        };
        assert!(!e[0].contains_key("target_member_id"));
        // Edits, bots and unknown events are ignored.
        let mut edited = fixture("slack/message.json");
        edited["event"]["subtype"] = json!("message_changed");
        assert!(matches!(
            slack("chat", "c1", &edited, &ids),
            Ok(SlackRequest::Mapped(Mapped::Ignored(_)))
        ));
        let mut bot = fixture("slack/message.json");
        bot["event"]["bot_id"] = json!("B1");
        assert!(matches!(
            slack("chat", "c1", &bot, &ids),
            Ok(SlackRequest::Mapped(Mapped::Ignored(_)))
        ));
    }

    /// Damaged copies of the real payloads, and random JSON: mapped or refused, never a panic.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        pub(crate) const FIXTURES: &[&str] = &[
            "slack/url_verification.json",
            "slack/message.json",
            "slack/thread_reply.json",
            "slack/reaction_added.json",
            "slack/member_joined_channel.json",
            "slack/member_left_channel.json",
        ];

        fn check(payload: &Value) {
            let ids = Identities::default();
            if let Ok(SlackRequest::Mapped(Mapped::Events(events))) =
                slack("chat", "c1", payload, &ids)
            {
                for e in events {
                    let _ = crate::event::parse_json_line(&Value::Object(e).to_string());
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn slack_maps_or_refuses_damaged_payloads(
                which in 0..FIXTURES.len(),
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
                cut in any::<prop::sample::Index>(),
            ) {
                let mut bytes = std::fs::read(format!(
                    "{}/tests/fixtures/{}", env!("CARGO_MANIFEST_DIR"), FIXTURES[which]
                )).unwrap();
                for (i, b) in flips {
                    let i = i.index(bytes.len());
                    bytes[i] = b;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                if let Ok(payload) = serde_json::from_slice::<Value>(&bytes) {
                    check(&payload);
                }
            }

            #[test]
            fn slack_maps_or_refuses_random_json(
                payload in crate::ingest::adapters::tests::properties::json(),
                event in crate::ingest::adapters::tests::properties::json(),
                kind in prop::sample::select(vec![
                    "message", "reaction_added", "member_joined_channel", "member_left_channel", "x",
                ]),
                ts in prop::sample::select(vec![
                    "1355517523.000005", "", "9999999999999999.1", "1.", ".5", "-1", "1e9", "١٢٣",
                ]),
            ) {
                check(&payload);
                let mut envelope = fixture("slack/message.json");
                let mut e = match event { Value::Object(m) => m, _ => Default::default() };
                e.insert("type".into(), kind.into());
                e.insert("ts".into(), ts.into());
                e.insert("event_ts".into(), ts.into());
                e.insert("item".into(), json!({ "type": "message", "channel": "C", "ts": ts }));
                envelope["event"] = Value::Object(e);
                check(&envelope);
            }
        }
    }
}
