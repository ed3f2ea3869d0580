//! 钉钉 (DingTalk) callbacks: the robot's outgoing messages and the HTTP event subscription.
//!
//! - **Robot** (机器人接收消息): headers `timestamp` (ms) and `sign` = base64 HMAC-SHA256 of
//!   `timestamp + "\n" + secret` ([`crate::signature::dingtalk_verify`], one-hour tolerance);
//!   the JSON body is one message → `post`, or `comment` when it replies.
//! - **Event subscription** (事件订阅, HTTP push): WeCom's WXBizMsgCrypt scheme
//!   ([`super::wecom`]: SHA-1 signature of the sorted token, timestamp, nonce and ciphertext;
//!   AES-256-CBC with the EncodingAESKey) in a JSON envelope: the query carries `signature`
//!   (or `msg_signature`), `timestamp` (or `timeStamp`) and `nonce`, the body `{"encrypt": …}`;
//!   the receive id is the corp id (企业内部应用 注册回调地址) or the app key (事件订阅 of
//!   an app). DingTalk retries every callback, the `check_url` registration included, until the
//!   answer is the encrypted word `success` ([`success`]). Group-chat member changes
//!   (`chat_add_member`, `chat_remove_member`, `chat_quit`) map to `join` / `leave`.
//!
//! Members are `<source>:<userid>` through the identity map; the robot's `senderNick` goes to
//! the member directory only ([`robot_names`]), never to the lake.

use serde_json::{json, Value};

use super::adapters::{event, text, Identities, Mapped};
use super::wecom::{self, Keys, Query, Refusal};

/// The query of a subscription callback: DingTalk's documentation and SDKs use both spellings.
pub fn subscription_query(query: &std::collections::BTreeMap<String, String>) -> Option<Query<'_>> {
    let get = |a: &str, b: &str| query.get(a).or_else(|| query.get(b)).map(String::as_str);
    Some(Query {
        msg_signature: get("signature", "msg_signature")?,
        timestamp: get("timestamp", "timeStamp")?,
        nonce: get("nonce", "nonce")?,
    })
}

/// Whether a request to a DingTalk source is an event-subscription callback (signed query)
/// rather than a robot message (signed headers).
pub fn is_subscription(query: &std::collections::BTreeMap<String, String>) -> bool {
    query.contains_key("signature") || query.contains_key("msg_signature")
}

/// Verify, decrypt and check the receive id of a subscription callback; its JSON event.
pub fn open(keys: &Keys, q: Query, body: &[u8]) -> Result<Value, Refusal> {
    let envelope: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::Malformed(format!("invalid JSON: {e}")))?;
    let encrypted = envelope["encrypt"]
        .as_str()
        .ok_or_else(|| Refusal::Malformed("no `encrypt` string in the body".into()))?;
    wecom::verify(keys.token, q.timestamp, q.nonce, encrypted, q.msg_signature)?;
    let message = wecom::decrypt(&keys.key, encrypted, keys.receive_id)?;
    serde_json::from_str(&message)
        .map_err(|e| Refusal::Malformed(format!("the decrypted message is not JSON: {e}")))
}

/// The answer DingTalk waits for: `success` encrypted with the source's keys and signed
/// (`msg_signature`, `timeStamp`, `nonce`, `encrypt`).
pub fn success(keys: &Keys, timestamp_ms: i64, nonce: &str, random: &[u8; 16]) -> Value {
    let encrypted = wecom::encrypt(&keys.key, random, "success", keys.receive_id);
    let timestamp = timestamp_ms.to_string();
    json!({
        "msg_signature": wecom::signature(keys.token, &timestamp, nonce, &encrypted),
        "timeStamp": timestamp,
        "nonce": nonce,
        "encrypt": encrypted,
    })
}

/// A decrypted subscription event → events. `chat_add_member` is a `join` and
/// `chat_remove_member` a `leave` of each `UserId`; `chat_quit` a `leave` of the `Operator`
/// who quit (or of `UserId` when given). The URL check and every other event are ignored
/// (answered `success`). Event ids are made of the chat, DingTalk's `TimeStamp`, the change
/// and the member, so a retried callback is stored once.
pub fn map(
    source: &str,
    community: &str,
    payload: &Value,
    ids: &Identities,
) -> Result<Mapped, String> {
    let kind = payload["EventType"].as_str().ok_or("EventType missing")?;
    let (event_type, change) = match kind {
        "chat_add_member" => ("join", "add"),
        "chat_remove_member" => ("leave", "remove"),
        "chat_quit" => ("leave", "quit"),
        "check_url" => return Ok(Mapped::Ignored("DingTalk URL check".into())),
        other => {
            return Ok(Mapped::Ignored(format!(
                "DingTalk event `{other}` is not mapped"
            )))
        }
    };
    let chat = text(&payload["ChatId"])
        .or_else(|| text(&payload["OpenConversationId"]))
        .ok_or("ChatId missing")?;
    let stamp = text(&payload["TimeStamp"]).ok_or("TimeStamp missing")?;
    let at = stamp
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .ok_or("TimeStamp is not milliseconds")?;
    let mut members: Vec<String> = match &payload["UserId"] {
        Value::Array(list) => list.iter().filter_map(text).collect(),
        one => text(one).into_iter().collect(),
    };
    if members.is_empty() && kind == "chat_quit" {
        members.extend(text(&payload["Operator"]));
    }
    if members.is_empty() {
        return Err(format!("`{kind}` names no member (UserId)"));
    }
    members.sort();
    members.dedup();
    let events = members
        .iter()
        .map(|m| {
            let mut e = event(
                source,
                community,
                format!("{chat}:{stamp}:{change}:{m}"),
                ids.member(&format!("{source}:{m}")),
                event_type,
                at.clone(),
            );
            e.insert(
                "properties".into(),
                json!({ "chat_id": chat, "change": kind })
                    .to_string()
                    .into(),
            );
            e
        })
        .collect();
    Ok(Mapped::Events(events))
}

/// A DingTalk robot callback (a message that @-mentions the robot in a group, or a direct
/// message) → `post`, or `comment` when DingTalk marks it as a reply
/// (`text.isReplyMsg` with `text.repliedMsg.msgId`). The member is `<source>:<senderStaffId>`
/// (DingTalk: "use senderStaffId as the sender's userid"), else the encrypted `senderId`;
/// the event id is `msgId`, the same on retries. Nicknames are not copied.
pub fn robot(
    source: &str,
    community: &str,
    payload: &Value,
    ids: &Identities,
) -> std::result::Result<Mapped, String> {
    let kind = payload["msgtype"].as_str().ok_or("msgtype missing")?;
    let id = text(&payload["msgId"]).ok_or("msgId missing")?;
    let sender = text(&payload["senderStaffId"])
        .or_else(|| text(&payload["senderId"]))
        .ok_or("senderStaffId and senderId missing")?;
    let at = text(&payload["createAt"])
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .ok_or("createAt missing or not milliseconds")?;
    let t = &payload["text"];
    let parent = (t["isReplyMsg"].as_bool() == Some(true))
        .then(|| text(&t["repliedMsg"]["msgId"]))
        .flatten();
    let mut e = event(
        source,
        community,
        id.clone(),
        ids.member(&format!("{source}:{sender}")),
        if parent.is_some() { "comment" } else { "post" },
        at,
    );
    e.insert("content_id".into(), id.into());
    if let Some(p) = parent {
        e.insert("parent_id".into(), p.into());
    }
    if kind == "text" {
        if let Some(body) = t["content"]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            e.insert("body".into(), body.into());
        }
    }
    e.insert(
        "properties".into(),
        json!({
            "msgtype": kind,
            "conversation_id": payload["conversationId"],
            "conversation_type": payload["conversationType"],
        })
        .to_string()
        .into(),
    );
    Ok(Mapped::Events(vec![e]))
}

/// The robot message's sender and nickname (`senderNick`), for the member directory.
pub fn robot_names(source: &str, payload: &Value, ids: &Identities) -> Vec<(String, String)> {
    let sender = text(&payload["senderStaffId"]).or_else(|| text(&payload["senderId"]));
    let nick = payload["senderNick"]
        .as_str()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    match (sender, nick) {
        (Some(id), Some(nick)) => vec![(ids.member(&format!("{source}:{id}")), nick.to_string())],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/dingtalk/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The vector of DingTalk's official callback library (open-dingtalk/DingTalk-Callback-Crypto,
    /// `DingCallbackCrypto3.py`): the registration's `check_url`, as DingTalk sent it.
    fn official() -> (Value, [u8; 32]) {
        let v = fixture("official_vector.json");
        let key = wecom::aes_key(v["aes_key"].as_str().unwrap()).unwrap();
        (v, key)
    }

    #[test]
    fn official_check_url_vector_decrypts_and_is_answered_success() {
        let (v, key) = official();
        let s = |k: &str| v[k].as_str().unwrap();
        let keys = Keys {
            token: s("token"),
            key,
            receive_id: s("receive_id"),
        };
        let query = std::collections::BTreeMap::from([
            ("signature".to_string(), s("signature").to_string()),
            ("timestamp".to_string(), s("timestamp").to_string()),
            ("nonce".to_string(), s("nonce").to_string()),
        ]);
        assert!(is_subscription(&query));
        let q = subscription_query(&query).unwrap();
        let body = json!({ "encrypt": s("encrypt") }).to_string();
        let event = open(&keys, q, body.as_bytes()).unwrap();
        assert_eq!(event, json!({ "EventType": "check_url" }));
        assert!(matches!(
            map("dt", "c1", &event, &Identities::default()),
            Ok(Mapped::Ignored(_))
        ));
        // The answer decrypts to `success` under the same keys, and its signature holds.
        let answer = success(&keys, 1_608_001_896_999, "n0nce", &[7; 16]);
        let enc = answer["encrypt"].as_str().unwrap();
        wecom::verify(
            keys.token,
            "1608001896999",
            "n0nce",
            enc,
            answer["msg_signature"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(
            wecom::decrypt(&key, enc, keys.receive_id).unwrap(),
            "success"
        );
        // Tampered, wrongly signed, or for another corp: refused.
        let wrong_sig = Query {
            msg_signature: "0".repeat(40).leak(),
            ..q
        };
        assert!(matches!(
            open(&keys, wrong_sig, body.as_bytes()),
            Err(Refusal::Unauthorized(_))
        ));
        let other = Keys {
            receive_id: "ding0000",
            ..keys
        };
        assert!(matches!(
            open(&other, q, body.as_bytes()),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(open(&keys, q, b"{}"), Err(Refusal::Malformed(_))));
        assert!(matches!(
            open(&keys, q, b"not json"),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn group_member_changes_are_joins_and_leaves() {
        let ids = Identities::default();
        let events = |name: &str| match map("dt", "c1", &fixture(name), &ids).unwrap() {
            Mapped::Events(events) => events
                .into_iter()
                .map(|mut e| {
                    e.insert("received_at".into(), "2026-11-30T00:00:00Z".into());
                    crate::event::parse_json_line(&Value::Object(e.clone()).to_string()).unwrap();
                    (
                        e["event_id"].as_str().unwrap().to_string(),
                        e["member_id"].as_str().unwrap().to_string(),
                        e["event_type"].as_str().unwrap().to_string(),
                        e["occurred_at"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>(),
            other => panic!("{name}: {other:?}"),
        };
        let at = "2019-11-21T03:37:47.470Z".to_string();
        assert_eq!(
            events("chat_add_member.json"),
            vec![
                (
                    "chatc1:1574307467470:add:user001".into(),
                    "dt:user001".into(),
                    "join".into(),
                    at.clone()
                ),
                (
                    "chatc1:1574307467470:add:user002".into(),
                    "dt:user002".into(),
                    "join".into(),
                    at.clone()
                ),
            ]
        );
        let mut quit = fixture("chat_add_member.json");
        quit["EventType"] = json!("chat_quit");
        quit.as_object_mut().unwrap().remove("UserId");
        quit["Operator"] = json!("user003");
        let Mapped::Events(left) = map("dt", "c1", &quit, &ids).unwrap() else {
            panic!()
        };
        assert_eq!(
            (left.len(), &left[0]["member_id"], &left[0]["event_type"]),
            (1, &json!("dt:user003"), &json!("leave"))
        );
        let mut removed = fixture("chat_add_member.json");
        removed["EventType"] = json!("chat_remove_member");
        let Mapped::Events(left) = map("dt", "c1", &removed, &ids).unwrap() else {
            panic!()
        };
        assert_eq!(
            left.iter().filter(|e| e["event_type"] == "leave").count(),
            2
        );
        let mut disband = fixture("chat_add_member.json");
        disband["EventType"] = json!("chat_disband");
        assert!(matches!(
            map("dt", "c1", &disband, &ids),
            Ok(Mapped::Ignored(_))
        ));
        let mut nobody = fixture("chat_add_member.json");
        nobody["UserId"] = json!([]);
        assert!(map("dt", "c1", &nobody, &ids).is_err());
    }

    #[test]
    fn robot_nickname_goes_to_the_directory_only() {
        let payload = fixture("robot_message.json");
        assert_eq!(
            robot_names("dt", &payload, &Identities::default()),
            vec![("dt:user123".to_string(), "杨xx".to_string())]
        );
    }

    #[test]
    fn dingtalk_robot_message_is_a_post_without_the_nickname() {
        let ids = Identities::default();
        let payload = fixture("robot_message.json");
        let Ok(Mapped::Events(events)) = robot("dt", "c1", &payload, &ids) else {
            panic!()
        };
        let mut e = events[0].clone();
        assert_eq!(
            (
                &e["event_id"],
                &e["member_id"],
                &e["event_type"],
                &e["occurred_at"],
                &e["body"]
            ),
            (
                &json!("msg0xxxxx"),
                &json!("dt:user123"),
                &json!("post"),
                &json!("2021-02-18T06:37:32.678Z"),
                &json!("你好")
            )
        );
        assert!(!Value::Object(e.clone()).to_string().contains("杨xx"));
        e.insert("received_at".into(), "2026-11-30T00:00:00Z".into());
        crate::event::parse_json_line(&Value::Object(e).to_string()).unwrap();
        // A reply (fields made up: DingTalk's docs show no reply example).
        let mut reply = payload.clone();
        reply["msgId"] = json!("msg1");
        reply["text"]["isReplyMsg"] = json!(true);
        reply["text"]["repliedMsg"] = json!({ "msgId": "msg0xxxxx" });
        let Ok(Mapped::Events(events)) = robot("dt", "c1", &reply, &ids) else {
            panic!()
        };
        assert_eq!(
            (&events[0]["event_type"], &events[0]["parent_id"]),
            (&json!("comment"), &json!("msg0xxxxx"))
        );
    }

    /// Damaged copies of the fixtures and random JSON: mapped or refused, never a panic.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        const FIXTURES: &[&str] = &[
            "robot_message.json",
            "chat_add_member.json",
            "official_vector.json",
        ];

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn dingtalk_maps_or_refuses_damaged_input(
                which in 0..FIXTURES.len(),
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
                cut in any::<prop::sample::Index>(),
            ) {
                let mut bytes = std::fs::read(format!(
                    "{}/tests/fixtures/dingtalk/{}", env!("CARGO_MANIFEST_DIR"), FIXTURES[which]
                )).unwrap();
                for (i, b) in flips {
                    let i = i.index(bytes.len());
                    bytes[i] = b;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                let ids = Identities::default();
                if let Ok(payload) = serde_json::from_slice::<Value>(&bytes) {
                    for mapped in [robot("dt", "c1", &payload, &ids), map("dt", "c1", &payload, &ids)] {
                        if let Ok(Mapped::Events(events)) = mapped {
                            for e in events {
                                let _ = crate::event::parse_json_line(&Value::Object(e).to_string());
                            }
                        }
                    }
                    let _ = robot_names("dt", &payload, &ids);
                }
                // The official ciphertext, damaged and then correctly signed: decryption
                // refuses it or yields something `map` refuses or maps.
                let (v, key) = official();
                let keys = Keys { token: "mryue", key, receive_id: "ding6ccabc44d2c8d38b" };
                let mut cipher = v["encrypt"].as_str().unwrap().as_bytes().to_vec();
                let i = cut.index(cipher.len());
                cipher[i] ^= 0x21;
                let cipher = String::from_utf8_lossy(&cipher).into_owned();
                let sig = wecom::signature(keys.token, "1", "n", &cipher);
                let q = Query { msg_signature: &sig, timestamp: "1", nonce: "n" };
                let body = json!({ "encrypt": cipher }).to_string();
                if let Ok(event) = open(&keys, q, body.as_bytes()) {
                    let _ = map("dt", "c1", &event, &ids);
                }
                let _ = open(&keys, q, &bytes);
            }
        }
    }
}
