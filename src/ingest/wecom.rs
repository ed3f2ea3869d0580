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
    let bytes = base64::engine::general_purpose::STANDARD
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

/// The secrets of a WeCom source.
pub struct Keys<'a> {
    pub token: &'a str,
    pub key: [u8; 32],
    pub receive_id: &'a str,
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
