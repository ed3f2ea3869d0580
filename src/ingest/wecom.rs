//! 企业微信 (WeCom) callbacks: Tencent's WXBizMsgCrypt scheme and the customer-group
//! (`change_external_chat`) events.
//!
//! - `msg_signature` = hex SHA-1 of the sorted token, timestamp, nonce and ciphertext;
//! - the AES key is the base64 of the 43-character EncodingAESKey + "=" (32 bytes), the IV its
//!   first 16 bytes; AES-256-CBC, PKCS#7 padded to 32 bytes;
//! - the plaintext is 16 random bytes, the message length (4 bytes, big-endian), the message
//!   and the receive id (the corp id), which must be the configured one.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::adapters::{event, Identities, Mapped};
use super::platforms::unix_time;

/// Why a callback is refused: 401 (not from the platform) or 400 (not readable).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Unauthorized(String),
    Malformed(String),
}

impl Refusal {
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Unauthorized(r) | Refusal::Malformed(r) => r,
        }
    }
}

/// The 32-byte AES key of an EncodingAESKey, or what is wrong with it.
pub fn aes_key(encoding_aes_key: &str) -> Result<[u8; 32], String> {
    let k = encoding_aes_key.trim();
    if k.chars().count() != 43 {
        return Err(format!(
            "holds {} characters; an EncodingAESKey has 43",
            k.chars().count()
        ));
    }
    // 43 characters carry 258 bits: the last 2 are not part of the key, and Tencent's
    // libraries ignore them (the official sample's key does not leave them zero).
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let bytes = LENIENT
        .decode(format!("{k}="))
        .map_err(|_| "is not base64 (an EncodingAESKey is 43 characters of base64)".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "does not decode to 32 bytes".to_string())
}

/// Hex SHA-1 of the sorted parts (WXBizMsgCrypt's `msg_signature`).
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypted: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypted];
    parts.sort_unstable();
    let digest = Sha1::digest(parts.concat().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Check `msg_signature` in constant time.
pub fn verify(
    token: &str,
    timestamp: &str,
    nonce: &str,
    encrypted: &str,
    msg_signature: &str,
) -> Result<(), Refusal> {
    let expected = signature(token, timestamp, nonce, encrypted);
    if bool::from(
        expected
            .as_bytes()
            .ct_eq(msg_signature.trim().to_ascii_lowercase().as_bytes()),
    ) {
        Ok(())
    } else {
        Err(Refusal::Unauthorized("msg_signature does not match".into()))
    }
}

type Decryptor = cbc::Decryptor<aes::Aes256>;
type Encryptor = cbc::Encryptor<aes::Aes256>;

/// Decrypt a base64 ciphertext and check its receive id; the message.
pub fn decrypt(key: &[u8; 32], encrypted: &str, receive_id: &str) -> Result<String, Refusal> {
    let bad = |why: &str| Refusal::Malformed(format!("the message cannot be decrypted: {why}"));
    let mut buf = base64::engine::general_purpose::STANDARD
        .decode(encrypted.trim())
        .map_err(|_| bad("not base64"))?;
    if buf.is_empty() || !buf.len().is_multiple_of(16) {
        return Err(bad("not whole AES blocks"));
    }
    let plain = Decryptor::new(key.into(), key[..16].into())
        .decrypt_padded_mut::<NoPadding>(&mut buf)
        .map_err(|_| bad("not whole AES blocks"))?;
    let pad = *plain.last().ok_or_else(|| bad("empty"))? as usize;
    if !(1..=32).contains(&pad) || pad > plain.len() {
        return Err(bad("bad padding (wrong key?)"));
    }
    let plain = &plain[..plain.len() - pad];
    if plain.len() < 20 {
        return Err(bad("too short"));
    }
    let len = u32::from_be_bytes([plain[16], plain[17], plain[18], plain[19]]) as usize;
    let rest = &plain[20..];
    if len > rest.len() {
        return Err(bad("bad length (wrong key?)"));
    }
    let (message, id) = rest.split_at(len);
    if !bool::from(id.ct_eq(receive_id.as_bytes())) {
        return Err(Refusal::Unauthorized(
            "the receive id of the message is not the configured receive_id".into(),
        ));
    }
    String::from_utf8(message.to_vec()).map_err(|_| bad("not UTF-8"))
}

/// Encrypt as WeCom does (tests, and replies that must be encrypted).
pub fn encrypt(key: &[u8; 32], random: &[u8; 16], message: &str, receive_id: &str) -> String {
    let mut plain = random.to_vec();
    plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
    plain.extend_from_slice(message.as_bytes());
    plain.extend_from_slice(receive_id.as_bytes());
    let pad = 32 - plain.len() % 32;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let len = plain.len();
    let out = Encryptor::new(key.into(), key[..16].into())
        .encrypt_padded_mut::<NoPadding>(&mut plain, len)
        .expect("whole blocks");
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// The fields of a flat WeCom XML document: each child of the root by name, and the member
/// ids of `MemChangeList` (`<Item>` children, or the older comma-separated text).
#[derive(Debug, Default)]
pub struct Xml {
    fields: Vec<(String, String)>,
    pub members: Vec<String>,
}

impl Xml {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// Parse a WeCom XML document (no DTDs: refused).
pub fn parse_xml(text: &str) -> Result<Xml, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut out = Xml::default();
    let mut stack: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut list_text = String::new();
    loop {
        match reader
            .read_event()
            .map_err(|e| format!("invalid XML: {e}"))?
        {
            Event::Start(e) => {
                if stack.len() >= 8 {
                    return Err("XML nested too deeply".into());
                }
                stack.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                current.clear();
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                let value = std::mem::take(&mut current).trim().to_string();
                match (stack.len(), stack.last().map(String::as_str)) {
                    (1, _) if name == "MemChangeList" => {
                        out.members.extend(
                            list_text
                                .split(',')
                                .map(str::trim)
                                .filter(|s| !s.is_empty())
                                .map(str::to_string),
                        );
                        list_text.clear();
                    }
                    (1, _) => out.fields.push((name, value)),
                    (2, Some("MemChangeList")) if !value.is_empty() => out.members.push(value),
                    _ => {}
                }
            }
            Event::Empty(e) if stack.len() == 1 => out.fields.push((
                String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                String::new(),
            )),
            Event::Text(t) => {
                let s = t.xml_content().map_err(|e| format!("invalid XML: {e}"))?;
                if stack.last().map(String::as_str) == Some("MemChangeList") {
                    list_text.push_str(&s);
                } else {
                    current.push_str(&s);
                }
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| format!("invalid XML: {e}"))?;
                if stack.last().map(String::as_str) == Some("MemChangeList") {
                    list_text.push_str(&s);
                } else {
                    current.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().ok().flatten() {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| format!("invalid XML: {e}"))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity `&{name};`"))?
                            .to_string()
                    }
                };
                current.push_str(&c);
            }
            Event::DocType(_) => return Err("XML with a DOCTYPE is refused".into()),
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("invalid XML: unclosed elements".into());
    }
    Ok(out)
}

/// The query of a WeCom callback.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub msg_signature: &'a str,
    pub timestamp: &'a str,
    pub nonce: &'a str,
}

impl Query<'_> {
    /// An owned copy, to move onto a blocking thread.
    pub fn to_owned(self) -> SignedQuery {
        SignedQuery {
            msg_signature: self.msg_signature.to_string(),
            timestamp: self.timestamp.to_string(),
            nonce: self.nonce.to_string(),
        }
    }
}

/// A [`Query`] that owns its values.
pub struct SignedQuery {
    msg_signature: String,
    timestamp: String,
    nonce: String,
}

impl SignedQuery {
    pub fn query(&self) -> Query<'_> {
        Query {
            msg_signature: &self.msg_signature,
            timestamp: &self.timestamp,
            nonce: &self.nonce,
        }
    }
}

/// The secrets of a WeCom source.
pub struct Keys<'a> {
    pub token: &'a str,
    pub key: [u8; 32],
    pub receive_id: &'a str,
}

/// [`Keys`] that own their values (read from the environment for a request).
pub struct Secrets {
    pub token: String,
    pub key: [u8; 32],
    pub receive_id: String,
}

impl Secrets {
    pub fn keys(&self) -> Keys<'_> {
        Keys {
            token: &self.token,
            key: self.key,
            receive_id: &self.receive_id,
        }
    }
}

/// `GET …?echostr=…`: verify and decrypt the echo string (the URL verification).
pub fn echo(keys: &Keys, q: Query, echostr: &str) -> Result<String, Refusal> {
    verify(keys.token, q.timestamp, q.nonce, echostr, q.msg_signature)?;
    decrypt(&keys.key, echostr, keys.receive_id)
}

/// `POST`: verify, decrypt, check the receive id; the decrypted XML.
pub fn open(keys: &Keys, q: Query, body: &[u8]) -> Result<Xml, Refusal> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Refusal::Malformed("the body is not UTF-8".into()))?;
    let envelope = parse_xml(text).map_err(Refusal::Malformed)?;
    let encrypted = envelope
        .get("Encrypt")
        .ok_or_else(|| Refusal::Malformed("no <Encrypt> in the body".into()))?;
    verify(keys.token, q.timestamp, q.nonce, encrypted, q.msg_signature)?;
    let message = decrypt(&keys.key, encrypted, keys.receive_id)?;
    parse_xml(&message).map_err(|e| Refusal::Malformed(format!("decrypted message: {e}")))
}

/// A decrypted WeCom message → events: `change_external_chat` `update` with `add_member` /
/// `del_member` is a `join` / `leave` of each member of `MemChangeList` (external user ids
/// and staff ids alike); everything else is ignored. Event ids are made of the chat, the
/// member version after the change (`CurMemVer`, else the time), the change and the member,
/// so WeCom's retries of a callback are stored once.
pub fn map(source: &str, community: &str, xml: &Xml, ids: &Identities) -> Result<Mapped, String> {
    let what = (
        xml.get("MsgType").unwrap_or(""),
        xml.get("Event").unwrap_or(""),
    );
    if what != ("event", "change_external_chat") {
        return Ok(Mapped::Ignored(format!(
            "WeCom message `{}`/`{}` is not mapped",
            what.0, what.1
        )));
    }
    let change = xml.get("ChangeType").unwrap_or("");
    if change != "update" {
        return Ok(Mapped::Ignored(format!(
            "customer group change `{change}` is not a membership change"
        )));
    }
    let detail = xml.get("UpdateDetail").unwrap_or("");
    let kind = match detail {
        "add_member" => "join",
        "del_member" => "leave",
        other => {
            return Ok(Mapped::Ignored(format!(
                "customer group update `{other}` is not a membership change"
            )))
        }
    };
    let chat = xml.get("ChatId").ok_or("ChatId missing")?;
    let created: i64 = xml
        .get("CreateTime")
        .and_then(|t| t.parse().ok())
        .ok_or("CreateTime missing or not a number")?;
    let at = unix_time(created).ok_or("CreateTime is not a time")?;
    if xml.members.is_empty() {
        return Err("MemChangeList lists no member".into());
    }
    let version = xml
        .get("CurMemVer")
        .map(str::to_string)
        .unwrap_or_else(|| created.to_string());
    let scene = if kind == "join" {
        xml.get("JoinScene")
    } else {
        xml.get("QuitScene")
    };
    let events = xml
        .members
        .iter()
        .map(|m| {
            let mut e = event(
                source,
                community,
                format!("{chat}:{version}:{detail}:{m}"),
                ids.member(&format!("{source}:{m}")),
                kind,
                at.clone(),
            );
            e.insert(
                "properties".into(),
                json!({ "chat_id": chat, "scene": scene.map(|s| Value::from(s.to_string())) })
                    .to_string()
                    .into(),
            );
            e
        })
        .collect();
    Ok(Mapped::Events(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn read(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/wecom/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn vectors() -> Value {
        serde_json::from_str(&read("official_vectors.json")).unwrap()
    }

    fn official_key() -> [u8; 32] {
        aes_key(vectors()["encoding_aes_key"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn tencent_official_vectors_pass() {
        let v = vectors();
        let key = official_key();
        let token = v["token"].as_str().unwrap();
        let corp = v["receive_id"].as_str().unwrap();
        let keys = Keys {
            token,
            key,
            receive_id: corp,
        };
        // GET: URL verification.
        let g = &v["verify_url"];
        let q = Query {
            msg_signature: g["msg_signature"].as_str().unwrap(),
            timestamp: g["timestamp"].as_str().unwrap(),
            nonce: g["nonce"].as_str().unwrap(),
        };
        assert_eq!(
            echo(&keys, q, g["echostr"].as_str().unwrap()).unwrap(),
            g["plaintext"].as_str().unwrap()
        );
        // POST: the encrypted text message.
        let p = &v["post"];
        let q = Query {
            msg_signature: p["msg_signature"].as_str().unwrap(),
            timestamp: p["timestamp"].as_str().unwrap(),
            nonce: p["nonce"].as_str().unwrap(),
        };
        let body = read("callback_envelope.xml");
        let xml = open(&keys, q, body.as_bytes()).unwrap();
        assert_eq!(
            (xml.get("MsgType"), xml.get("Content"), xml.get("AgentID")),
            (Some("text"), Some("hello"), Some("218"))
        );
        // A text message is not a membership change.
        assert!(matches!(
            map("wc", "c1", &xml, &Identities::default()),
            Ok(Mapped::Ignored(_))
        ));
        // Another receive id, token or key; a tampered ciphertext.
        let other = Keys {
            token,
            key,
            receive_id: "wwsomeoneelse",
        };
        assert!(matches!(
            open(&other, q, body.as_bytes()),
            Err(Refusal::Unauthorized(_))
        ));
        let forged = Keys {
            token: "nottoken",
            key,
            receive_id: corp,
        };
        assert!(matches!(
            open(&forged, q, body.as_bytes()),
            Err(Refusal::Unauthorized(_))
        ));
        let mut wrong_key = key;
        wrong_key[31] ^= 1;
        let wrong = Keys {
            token,
            key: wrong_key,
            receive_id: corp,
        };
        assert!(open(&wrong, q, body.as_bytes()).is_err());
        let tampered = body.replacen("RypEv", "RypEw", 1);
        assert!(matches!(
            open(&keys, q, tampered.as_bytes()),
            Err(Refusal::Unauthorized(_))
        ));
        // Our encryption is read back by our decryption (and checked against Tencent's
        // vector above; the HTTP tests encrypt independently, in Python).
        let sealed = encrypt(&key, b"0123456789abcdef", "<xml/>", corp);
        assert_eq!(decrypt(&key, &sealed, corp).unwrap(), "<xml/>");
    }

    #[test]
    fn aes_keys_of_the_wrong_length_are_named() {
        assert!(aes_key("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").is_ok());
        assert!(aes_key("short").unwrap_err().contains("43"));
        assert!(aes_key(&"!".repeat(43)).unwrap_err().contains("base64"));
    }

    #[test]
    fn customer_group_member_changes_in_both_list_formats() {
        let ids = Identities::load(
            &BTreeMap::from([("wc:Rose".to_string(), "u9".to_string())]),
            None,
        )
        .unwrap();
        let mapped = |file: &str| match map("wc", "c1", &parse_xml(&read(file)).unwrap(), &ids)
            .unwrap()
        {
            Mapped::Events(events) => events
                .into_iter()
                .map(|mut e| {
                    e.insert("received_at".into(), "2026-11-30T00:00:00Z".into());
                    crate::event::parse_json_line(&Value::Object(e.clone()).to_string()).unwrap();
                    e
                })
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let joins = mapped("change_external_chat_add_member.xml");
        let leaves = mapped("change_external_chat_del_member_text_list.xml");
        for (events, kind) in [(&joins, "join"), (&leaves, "leave")] {
            let got: Vec<_> = events
                .iter()
                .map(|e| {
                    (
                        e["event_type"].as_str().unwrap(),
                        e["member_id"].as_str().unwrap(),
                        e["occurred_at"].as_str().unwrap(),
                        e["source"].as_str().unwrap(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                [
                    (kind, "wc:Jack", "2014-06-24T11:48:33Z", "wc"),
                    (kind, "u9", "2014-06-24T11:48:33Z", "wc")
                ]
            );
        }
        assert_eq!(
            joins[0]["event_id"],
            "wrx7HUARsKwGRaQBVKPBTcEyzdHA4HrQ:71217227bbd112ecfe3a49c482195cb4:add_member:Jack"
        );
        assert_ne!(joins[0]["event_id"], leaves[0]["event_id"]);
        // The same callback again (WeCom's retry) has the same ids.
        assert_eq!(
            mapped("change_external_chat_add_member.xml")[1]["event_id"],
            joins[1]["event_id"]
        );
        // Create and dismiss are answered and ignored.
        for change in ["create", "dismiss"] {
            let text = read("change_external_chat_add_member.xml")
                .replace("[update]", &format!("[{change}]"));
            assert!(matches!(
                map("wc", "c1", &parse_xml(&text).unwrap(), &ids),
                Ok(Mapped::Ignored(_))
            ));
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// Damaged documents (decrypted or envelope), random bytes as a body or as a
            /// ciphertext: mapped or refused, never a panic.
            #[test]
            fn wecom_maps_or_refuses_damaged_input(
                which in 0..3usize,
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
                cut in any::<prop::sample::Index>(),
                noise in prop::collection::vec(any::<u8>(), 0..200),
            ) {
                let file = ["change_external_chat_add_member.xml",
                    "change_external_chat_del_member_text_list.xml", "callback_envelope.xml"][which];
                let mut bytes = read(file).into_bytes();
                for (i, b) in flips {
                    let i = i.index(bytes.len());
                    bytes[i] = b;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                let text = String::from_utf8_lossy(&bytes);
                if let Ok(xml) = parse_xml(&text) {
                    if let Ok(Mapped::Events(events)) = map("wc", "c1", &xml, &Identities::default()) {
                        for e in events {
                            let _ = crate::event::parse_json_line(&Value::Object(e).to_string());
                        }
                    }
                }
                let v = vectors();
                let keys = Keys { token: "QDG6eK", key: official_key(), receive_id: "wx5823bf96d3bd56c7" };
                let q = Query { msg_signature: "x", timestamp: "1", nonce: "2" };
                let _ = open(&keys, q, &bytes);
                let _ = open(&keys, q, &noise);
                // Correctly signed garbage must be refused by the decryption, not panic it.
                let garbage = base64::engine::general_purpose::STANDARD.encode(&noise);
                let ts = v["post"]["timestamp"].as_str().unwrap();
                let sig = signature("QDG6eK", ts, "n", &garbage);
                let q = Query { msg_signature: &sig, timestamp: ts, nonce: "n" };
                let body = format!("<xml><Encrypt><![CDATA[{garbage}]]></Encrypt></xml>");
                prop_assert!(open(&keys, q, body.as_bytes()).is_err());
                let sealed = encrypt(&official_key(), &[7; 16], &text, "wx5823bf96d3bd56c7");
                let sig = signature("QDG6eK", ts, "n", &sealed);
                let q = Query { msg_signature: &sig, timestamp: ts, nonce: "n" };
                let body = format!("<xml><Encrypt><![CDATA[{sealed}]]></Encrypt></xml>");
                if let Ok(xml) = open(&keys, q, body.as_bytes()) {
                    let _ = map("wc", "c1", &xml, &Identities::default());
                }
            }
        }
    }
}
