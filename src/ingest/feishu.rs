//! 飞书 / Lark event subscriptions (schema 2.0).
//!
//! - with an Encrypt Key, bodies are `{"encrypt": base64}`: AES-256-CBC with key = SHA-256
//!   of the Encrypt Key, IV = the first 16 bytes of the ciphertext, PKCS#7;
//! - `X-Lark-Signature` = hex SHA-256 of `X-Lark-Request-Timestamp` + `X-Lark-Request-Nonce`
//!   + Encrypt Key + the raw body; every event must carry a matching one;
//! - the `url_verification` challenge (plain or encrypted; Feishu does not sign it) is
//!   answered when its `token` is the Verification Token, and every event's
//!   `header.token` must be it too.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::adapters::{event, Identities, Mapped};
use super::wecom::Refusal;

/// The secrets of a Feishu source.
pub struct Keys<'a> {
    pub verification_token: &'a str,
    pub encrypt_key: &'a str,
}

/// The signature headers of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signed<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// What a verified request asks for.
#[derive(Debug)]
pub enum Request {
    Challenge(String),
    Event(Value),
}

/// Hex SHA-256 of timestamp + nonce + encrypt key + body.
pub fn signature(timestamp: &str, nonce: &str, encrypt_key: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(timestamp.as_bytes());
    h.update(nonce.as_bytes());
    h.update(encrypt_key.as_bytes());
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Decrypt an `encrypt` field.
pub fn decrypt(encrypt_key: &str, encrypted: &str) -> Result<String, Refusal> {
    let bad = |why: &str| Refusal::Malformed(format!("the body cannot be decrypted: {why}"));
    let data = base64::engine::general_purpose::STANDARD
        .decode(encrypted.trim())
        .map_err(|_| bad("not base64"))?;
    if data.len() < 32 || !data.len().is_multiple_of(16) {
        return Err(bad("not whole AES blocks after the IV"));
    }
    let key: [u8; 32] = Sha256::digest(encrypt_key.as_bytes()).into();
    let (iv, rest) = data.split_at(16);
    let mut buf = rest.to_vec();
    let plain = cbc::Decryptor::<aes::Aes256>::new(&key.into(), iv.into())
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .map_err(|_| bad("bad padding (wrong Encrypt Key?)"))?;
    String::from_utf8(plain.to_vec()).map_err(|_| bad("not UTF-8"))
}

/// Verify and open a request.
pub fn open(keys: &Keys, signed: Signed, body: &[u8]) -> Result<Request, Refusal> {
    let unauthorized = |why: &str| Refusal::Unauthorized(why.to_string());
    let is_signed = match (signed.timestamp, signed.nonce, signed.signature) {
        (Some(t), Some(n), Some(s)) => {
            let expected = signature(t, n, keys.encrypt_key, body);
            if !bool::from(
                expected
                    .as_bytes()
                    .ct_eq(s.trim().to_ascii_lowercase().as_bytes()),
            ) {
                return Err(unauthorized("X-Lark-Signature does not match"));
            }
            true
        }
        (None, None, None) => false,
        _ => {
            return Err(unauthorized(
                "incomplete X-Lark-Request-Timestamp / X-Lark-Request-Nonce / X-Lark-Signature",
            ))
        }
    };
    let outer: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::Malformed(format!("invalid JSON: {e}")))?;
    let payload: Value = match outer.get("encrypt") {
        Some(Value::String(enc)) => serde_json::from_str(&decrypt(keys.encrypt_key, enc)?)
            .map_err(|e| Refusal::Malformed(format!("the decrypted body is not JSON: {e}")))?,
        Some(_) => return Err(Refusal::Malformed("`encrypt` is not a string".into())),
        None => outer,
    };
    let token_is = |t: &Value| {
        t.as_str()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(keys.verification_token.as_bytes())))
    };
    if payload["type"].as_str() == Some("url_verification") {
        if !token_is(&payload["token"]) {
            return Err(unauthorized(
                "the url_verification token is not the Verification Token",
            ));
        }
        let challenge = payload["challenge"]
            .as_str()
            .ok_or_else(|| Refusal::Malformed("url_verification without a challenge".into()))?;
        return Ok(Request::Challenge(challenge.to_string()));
    }
    if !is_signed {
        return Err(unauthorized("missing X-Lark-Signature"));
    }
    let token = if payload.get("header").is_some() {
        &payload["header"]["token"]
    } else {
        &payload["token"]
    };
    if !token_is(token) {
        return Err(unauthorized(
            "the event's token is not the Verification Token",
        ));
    }
    Ok(Request::Event(payload))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Milliseconds since the epoch (a string, as Feishu sends them) as RFC 3339.
fn millis(v: &Value) -> Option<String> {
    let ms: i64 = text(v)?.parse().ok()?;
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The text of a message's `content` (JSON text): `text` messages' text; `post` (rich text)
/// messages' title and the text of their elements, one paragraph a line.
fn message_text(message_type: &str, content: &str) -> (Option<String>, Option<String>) {
    let Ok(c) = serde_json::from_str::<Value>(content) else {
        return (None, None);
    };
    match message_type {
        "text" => (None, text(&c["text"])),
        "post" => {
            // Received posts are `{title, content}`; sent ones wrap that in a locale.
            let post = if c.get("content").is_some() {
                &c
            } else {
                c.as_object()
                    .and_then(|m| m.values().find(|v| v.get("content").is_some()))
                    .unwrap_or(&Value::Null)
            };
            let lines: Vec<String> = post["content"]
                .as_array()
                .map(|paragraphs| {
                    paragraphs
                        .iter()
                        .map(|p| {
                            p.as_array()
                                .map(|els| {
                                    els.iter()
                                        .filter_map(|e| e["text"].as_str())
                                        .collect::<String>()
                                })
                                .unwrap_or_default()
                        })
                        .filter(|l| !l.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            (
                text(&post["title"]),
                (!lines.is_empty()).then(|| lines.join("\n")),
            )
        }
        _ => (None, None),
    }
}

/// A verified event → canonical events. Members are `<source>:<open_id>`.
pub fn map(
    source: &str,
    community: &str,
    payload: &Value,
    ids: &Identities,
) -> Result<Mapped, String> {
    let header = &payload["header"];
    let kind = header["event_type"]
        .as_str()
        .ok_or("header.event_type missing")?;
    let e = &payload["event"];
    let member =
        |ids_of: &Value| text(&ids_of["open_id"]).map(|u| ids.member(&format!("{source}:{u}")));
    let events = match kind {
        "im.message.receive_v1" => {
            let m = &e["message"];
            if e["sender"]["sender_type"]
                .as_str()
                .is_some_and(|t| t != "user")
            {
                return Ok(Mapped::Ignored("messages of apps are not counted".into()));
            }
            let author = member(&e["sender"]["sender_id"])
                .ok_or("event.sender.sender_id.open_id missing")?;
            let id = text(&m["message_id"]).ok_or("event.message.message_id missing")?;
            let at = millis(&m["create_time"])
                .or_else(|| millis(&header["create_time"]))
                .ok_or("event.message.create_time missing")?;
            let parent = text(&m["parent_id"]).or_else(|| text(&m["root_id"]));
            let kind = if parent.is_some() { "comment" } else { "post" };
            let mut ev = event(source, community, id.clone(), author, kind, at);
            ev.insert("content_id".into(), id.into());
            if let Some(p) = parent {
                ev.insert("parent_id".into(), p.into());
            }
            let message_type = m["message_type"].as_str().unwrap_or("");
            let (title, body) = message_text(message_type, m["content"].as_str().unwrap_or(""));
            if let Some(t) = title {
                ev.insert("title".into(), t.into());
            }
            if let Some(b) = body {
                ev.insert("body".into(), b.into());
            }
            ev.insert(
                "properties".into(),
                json!({ "chat_id": m["chat_id"], "chat_type": m["chat_type"], "message_type": message_type, "root_id": m["root_id"] })
                    .to_string()
                    .into(),
            );
            vec![ev]
        }
        "im.message.reaction.created_v1" => {
            if e["operator_type"].as_str().is_some_and(|t| t != "user") {
                return Ok(Mapped::Ignored("reactions of apps are not counted".into()));
            }
            let who = member(&e["user_id"]).ok_or("event.user_id.open_id missing")?;
            let message = text(&e["message_id"]).ok_or("event.message_id missing")?;
            let emoji = text(&e["reaction_type"]["emoji_type"]).unwrap_or_default();
            let open_id = text(&e["user_id"]["open_id"]).unwrap_or_default();
            let at = millis(&e["action_time"])
                .or_else(|| millis(&header["create_time"]))
                .ok_or("event.action_time missing")?;
            // Feishu does not say whose message it was: no target (the models resolve it).
            let mut ev = event(
                source,
                community,
                format!("{message}:react:{emoji}:{open_id}"),
                who,
                "like",
                at,
            );
            ev.insert("content_id".into(), message.into());
            ev.insert(
                "properties".into(),
                json!({ "emoji_type": emoji }).to_string().into(),
            );
            vec![ev]
        }
        "im.chat.member.user.added_v1" | "im.chat.member.user.deleted_v1" => {
            let kind = if kind.ends_with("added_v1") {
                "join"
            } else {
                "leave"
            };
            let event_id = text(&header["event_id"]).ok_or("header.event_id missing")?;
            let at = millis(&header["create_time"]).ok_or("header.create_time missing")?;
            let users = e["users"].as_array().ok_or("event.users missing")?;
            let mut out = Vec::new();
            for u in users {
                let Some(open_id) = text(&u["user_id"]["open_id"]) else {
                    return Err("a user without user_id.open_id".into());
                };
                // Names in the payload are not copied.
                let mut ev = event(
                    source,
                    community,
                    format!("{event_id}:{open_id}"),
                    ids.member(&format!("{source}:{open_id}")),
                    kind,
                    at.clone(),
                );
                ev.insert(
                    "properties".into(),
                    json!({ "chat_id": e["chat_id"], "external": e["external"] })
                        .to_string()
                        .into(),
                );
                out.push(ev);
            }
            if out.is_empty() {
                return Err("event.users is empty".into());
            }
            out
        }
        other => {
            return Ok(Mapped::Ignored(format!(
                "Feishu event `{other}` is not mapped"
            )))
        }
    };
    Ok(Mapped::Events(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockEncryptMut;

    fn read(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/feishu/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    const TOKEN: &str = "rvaYgkND1GOiu5MM0E1rncYC6PLtF7JV";
    const KEY: &str = "test key";

    fn keys() -> Keys<'static> {
        Keys {
            verification_token: TOKEN,
            encrypt_key: KEY,
        }
    }

    fn encrypt(key: &str, plain: &str) -> String {
        let k: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let iv = [9u8; 16];
        let mut buf = plain.as_bytes().to_vec();
        let len = buf.len();
        buf.resize(len + 16, 0);
        let ct = cbc::Encryptor::<aes::Aes256>::new(&k.into(), &iv.into())
            .encrypt_padded_mut::<Pkcs7>(&mut buf, len)
            .unwrap()
            .to_vec();
        base64::engine::general_purpose::STANDARD.encode([iv.to_vec(), ct].concat())
    }

    fn sealed(plain: &str) -> Vec<u8> {
        json!({ "encrypt": encrypt(KEY, plain) })
            .to_string()
            .into_bytes()
    }

    fn signed<'a>(body: &[u8], sig: &'a mut String) -> Signed<'a> {
        *sig = signature("1609073151", "nonce-1", KEY, body);
        Signed {
            timestamp: Some("1609073151"),
            nonce: Some("nonce-1"),
            signature: Some(sig.as_str()),
        }
    }

    #[test]
    fn feishu_published_decryption_example() {
        let v: Value = serde_json::from_str(&read("encrypt_example.json")).unwrap();
        assert_eq!(
            decrypt(
                v["encrypt_key"].as_str().unwrap(),
                v["encrypt"].as_str().unwrap()
            )
            .unwrap(),
            v["plaintext"].as_str().unwrap()
        );
        assert!(decrypt("other key", v["encrypt"].as_str().unwrap()).is_err());
        assert_eq!(decrypt(KEY, &encrypt(KEY, "你好")).unwrap(), "你好");
    }

    #[test]
    fn url_verification_plain_and_encrypted_and_signed_events() {
        let challenge = read("url_verification.json").replace("xxxxxx", TOKEN);
        for body in [challenge.clone().into_bytes(), sealed(&challenge)] {
            match open(&keys(), Signed::default(), &body).unwrap() {
                Request::Challenge(c) => assert_eq!(c, "ajls384kdjx98XX"),
                other => panic!("{other:?}"),
            }
        }
        // Another token: refused.
        let wrong = read("url_verification.json");
        assert!(matches!(
            open(&keys(), Signed::default(), wrong.as_bytes()),
            Err(Refusal::Unauthorized(_))
        ));
        // An event: encrypted, signed: opened; unsigned, forged, tampered: refused.
        let body = sealed(&read("im_message_receive_v1_text.json"));
        let mut sig = String::new();
        assert!(matches!(
            open(&keys(), signed(&body, &mut sig), &body),
            Ok(Request::Event(_))
        ));
        assert!(matches!(
            open(&keys(), Signed::default(), &body),
            Err(Refusal::Unauthorized(_))
        ));
        let mut forged = signed(&body, &mut sig);
        forged.nonce = Some("nonce-2");
        assert!(matches!(
            open(&keys(), forged, &body),
            Err(Refusal::Unauthorized(_))
        ));
        let mut tampered = body.clone();
        tampered[20] ^= 1;
        assert!(matches!(
            open(&keys(), signed(&body, &mut sig), &tampered),
            Err(Refusal::Unauthorized(_))
        ));
        // Signed with the right key, but not decryptable / another verification token.
        let junk = json!({ "encrypt": "AAAA" }).to_string().into_bytes();
        assert!(matches!(
            open(&keys(), signed(&junk, &mut sig), &junk),
            Err(Refusal::Malformed(_))
        ));
        let other = sealed(&read("im_message_receive_v1_text.json").replace(TOKEN, "other"));
        assert!(matches!(
            open(&keys(), signed(&other, &mut sig), &other),
            Err(Refusal::Unauthorized(_))
        ));
    }

    fn mapped(file: &str) -> Vec<Value> {
        let ids = Identities::load(
            &std::collections::BTreeMap::from([(
                "fs:ou_84aad35d084aa403a838cf73ee18467".to_string(),
                "u1".to_string(),
            )]),
            None,
        )
        .unwrap();
        let payload: Value = serde_json::from_str(&read(file)).unwrap();
        match map("fs", "c1", &payload, &ids).unwrap() {
            Mapped::Events(events) => events
                .into_iter()
                .map(|mut e| {
                    e.insert("received_at".into(), "2026-11-30T00:00:00Z".into());
                    crate::event::parse_json_line(&Value::Object(e.clone()).to_string()).unwrap();
                    Value::Object(e)
                })
                .collect(),
            other => panic!("{file}: {other:?}"),
        }
    }

    #[test]
    fn documented_events_map_to_canonical_events() {
        let post = &mapped("im_message_receive_v1_text.json")[0];
        assert_eq!(
            (
                &post["event_type"],
                &post["member_id"],
                &post["event_id"],
                &post["content_id"],
                &post["body"],
                &post["occurred_at"]
            ),
            (
                &json!("post"),
                &json!("u1"),
                &json!("om_5ce6d572455d361153b7cb51da133945"),
                &json!("om_5ce6d572455d361153b7cb51da133945"),
                &json!("@_user_1 hello"),
                &json!("2020-12-27T12:45:51.345Z")
            )
        );
        assert!(!post.to_string().contains("Tom"), "no names");
        let reply = &mapped("im_message_receive_v1_post_reply.json")[0];
        assert_eq!(
            (
                &reply["event_type"],
                &reply["parent_id"],
                &reply["title"],
                &reply["body"]
            ),
            (
                &json!("comment"),
                &json!("om_5ce6d572455d361153b7cb51da133945"),
                &json!("我是一个标题"),
                &json!("第一行 :超链接\n第二行:文本测试")
            )
        );
        let like = &mapped("im_message_reaction_created_v1.json")[0];
        assert_eq!(
            (&like["event_type"], &like["member_id"], &like["content_id"]),
            (
                &json!("like"),
                &json!("u1"),
                &json!("om_dc1326***************51dba21dcf")
            )
        );
        assert!(like.get("target_member_id").is_none());
        let join = &mapped("im_chat_member_user_added_v1.json")[0];
        let leave = &mapped("im_chat_member_user_deleted_v1.json")[0];
        assert_eq!(
            (&join["event_type"], &join["member_id"]),
            (
                &json!("join"),
                &json!("fs:ou_c9d7c6f8f4e05fc1b3a63c7c1f0b1f22")
            )
        );
        assert_eq!(leave["event_type"], "leave");
        assert!(!join.to_string().contains("user name"), "no names");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const FILES: &[&str] = &[
            "url_verification.json",
            "im_message_receive_v1_text.json",
            "im_message_receive_v1_post_reply.json",
            "im_message_reaction_created_v1.json",
            "im_chat_member_user_added_v1.json",
            "im_chat_member_user_deleted_v1.json",
        ];

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// Damaged documents, plain and encrypted and signed, random bodies and random
            /// JSON under the event keys: mapped or refused, never a panic.
            #[test]
            fn feishu_maps_or_refuses_damaged_input(
                which in 0..FILES.len(),
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
                cut in any::<prop::sample::Index>(),
                noise in prop::collection::vec(any::<u8>(), 0..200),
                event in crate::ingest::adapters::tests::properties::json(),
            ) {
                let mut bytes = read(FILES[which]).into_bytes();
                for (i, b) in flips {
                    let i = i.index(bytes.len());
                    bytes[i] = b;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                let text = String::from_utf8_lossy(&bytes).replace("xxxxxx", TOKEN);
                let mut sig = String::new();
                for body in [text.clone().into_bytes(), sealed(&text), noise.clone()] {
                    let _ = open(&keys(), Signed::default(), &body);
                    if let Ok(Request::Event(p)) = open(&keys(), signed(&body, &mut sig), &body) {
                        if let Ok(Mapped::Events(events)) = map("fs", "c1", &p, &Identities::default()) {
                            for e in events {
                                let _ = crate::event::parse_json_line(&Value::Object(e).to_string());
                            }
                        }
                    }
                }
                let garbage = base64::engine::general_purpose::STANDARD.encode(&noise);
                prop_assert!(decrypt(KEY, &garbage).is_err() || noise.len() >= 32);
                for kind in ["im.message.receive_v1", "im.message.reaction.created_v1",
                        "im.chat.member.user.added_v1", "im.chat.member.user.deleted_v1"] {
                    let payload = json!({ "header": { "event_type": kind, "event_id": "e",
                        "create_time": "1609073300000" }, "event": event.clone() });
                    let _ = map("fs", "c1", &payload, &Identities::default());
                }
            }
        }
    }
}
