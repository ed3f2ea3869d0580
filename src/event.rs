//! The canonical event (SPEC §2) and the validation every input path shares (SPEC §4.8).
//!
//! Input paths (NDJSON, CSV, platform exports, webhook adapters) turn their bytes into [`RawFields`]; [`validate`]
//! turns those into an [`Event`] or a one-line reason that goes to quarantine. Text borrows from
//! the input where it can, so a million-line import does not allocate a million strings per column.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

/// The event types of SPEC §2, in a fixed order (the discriminant is stable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    Join,
    Leave,
    Post,
    Comment,
    Like,
    Share,
    Cite,
    Solution,
    Checkin,
    Attend,
    View,
    Purchase,
    Refund,
    Report,
    Warn,
    Ban,
    Unban,
}

impl EventType {
    pub const ALL: [EventType; 17] = [
        EventType::Join,
        EventType::Leave,
        EventType::Post,
        EventType::Comment,
        EventType::Like,
        EventType::Share,
        EventType::Cite,
        EventType::Solution,
        EventType::Checkin,
        EventType::Attend,
        EventType::View,
        EventType::Purchase,
        EventType::Refund,
        EventType::Report,
        EventType::Warn,
        EventType::Ban,
        EventType::Unban,
    ];

    /// Types that make a member "active" on a day (SPEC §2; configurable per community).
    pub const DEFAULT_ACTIVE: [EventType; 8] = [
        EventType::Post,
        EventType::Comment,
        EventType::Like,
        EventType::Share,
        EventType::Cite,
        EventType::Solution,
        EventType::Checkin,
        EventType::Attend,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Join => "join",
            EventType::Leave => "leave",
            EventType::Post => "post",
            EventType::Comment => "comment",
            EventType::Like => "like",
            EventType::Share => "share",
            EventType::Cite => "cite",
            EventType::Solution => "solution",
            EventType::Checkin => "checkin",
            EventType::Attend => "attend",
            EventType::View => "view",
            EventType::Purchase => "purchase",
            EventType::Refund => "refund",
            EventType::Report => "report",
            EventType::Warn => "warn",
            EventType::Ban => "ban",
            EventType::Unban => "unban",
        }
    }
}

impl FromStr for EventType {
    type Err = ();
    /// Case-sensitive, as SPEC §4.8 requires.
    fn from_str(s: &str) -> Result<Self, ()> {
        // A match, not a search of ALL: one length switch and a compare per event parsed.
        Ok(match s {
            "join" => EventType::Join,
            "leave" => EventType::Leave,
            "post" => EventType::Post,
            "comment" => EventType::Comment,
            "like" => EventType::Like,
            "share" => EventType::Share,
            "cite" => EventType::Cite,
            "solution" => EventType::Solution,
            "checkin" => EventType::Checkin,
            "attend" => EventType::Attend,
            "view" => EventType::View,
            "purchase" => EventType::Purchase,
            "refund" => EventType::Refund,
            "report" => EventType::Report,
            "warn" => EventType::Warn,
            "ban" => EventType::Ban,
            "unban" => EventType::Unban,
            _ => return Err(()),
        })
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The columns of `events` in SPEC order, as stored. In the lake `community_id` lives in the
/// Hive partition path, so Parquet files hold [`file_schema`] and tables add the partition
/// columns back.
pub fn event_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("community_id", DataType::Utf8, false),
        Field::new("member_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("occurred_at", ts(), false),
        Field::new("received_at", ts(), false),
        Field::new("content_id", DataType::Utf8, true),
        Field::new("parent_id", DataType::Utf8, true),
        Field::new("target_member_id", DataType::Utf8, true),
        Field::new("title", DataType::Utf8, true),
        Field::new("body", DataType::Utf8, true),
        Field::new("amount_minor", DataType::Int64, true),
        Field::new("currency", DataType::Utf8, true),
        Field::new("properties", DataType::Utf8, true),
    ]))
}

/// The columns inside an events Parquet file: [`event_schema`] without `community_id`.
pub fn file_schema() -> SchemaRef {
    let full = event_schema();
    Arc::new(Schema::new(
        full.fields()
            .iter()
            .filter(|f| f.name() != "community_id")
            .cloned()
            .collect::<Vec<_>>(),
    ))
}

/// One validated event. Timestamps are microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub source: Cow<'a, str>,
    pub community_id: Cow<'a, str>,
    pub member_id: Cow<'a, str>,
    pub event_type: EventType,
    pub occurred_at: i64,
    /// `None` when the input did not carry it: the importer stamps the moment of acceptance.
    pub received_at: Option<i64>,
    pub content_id: Option<Cow<'a, str>>,
    pub parent_id: Option<Cow<'a, str>>,
    pub target_member_id: Option<Cow<'a, str>>,
    pub title: Option<Cow<'a, str>>,
    pub body: Option<Cow<'a, str>>,
    pub amount_minor: Option<i64>,
    pub currency: Option<Cow<'a, str>>,
    pub properties: Option<Cow<'a, str>>,
}

impl Event<'_> {
    /// The dedupe key `(community_id, source, event_id)` (SPEC §2) as a 128-bit hash
    /// (collisions are negligible: ~10⁻²⁴ for 10⁹ events).
    pub fn key(&self) -> u128 {
        dedupe_key(&self.community_id, &self.source, &self.event_id)
    }
}

/// The hash of a dedupe key. Each part is preceded by its length, so no two different keys
/// hash the same bytes. Keys are only ever compared within one process (the lake's are read
/// back from its files each import), so the encoding may change between versions.
pub fn dedupe_key(community_id: &str, source: &str, event_id: &str) -> u128 {
    let parts = [community_id, source, event_id];
    // The usual key fits on the stack and is hashed in one call (the streaming hasher gives
    // the same value for the same bytes, at twice the cost).
    let mut buf = [0u8; 256];
    let mut at = 0;
    for part in parts {
        let Some(dst) = buf.get_mut(at..at + 8 + part.len()) else {
            return dedupe_key_streamed(parts);
        };
        dst[..8].copy_from_slice(&(part.len() as u64).to_le_bytes());
        dst[8..].copy_from_slice(part.as_bytes());
        at += 8 + part.len();
    }
    xxhash_rust::xxh3::xxh3_128(&buf[..at])
}

fn dedupe_key_streamed(parts: [&str; 3]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in parts {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.digest128()
}

/// Fields as an input format delivers them, before validation. NDJSON lines deserialize into
/// it directly (strict: unknown keys are errors); CSV fills it column by column.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFields<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub source: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub community_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub member_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub occurred_at: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub received_at: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub content_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub parent_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub target_member_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub title: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub body: Option<Cow<'a, str>>,
    #[serde(default)]
    pub amount_minor: Option<i64>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub currency: Option<Cow<'a, str>>,
    /// JSON object text (NDJSON may give an object or a string holding one).
    #[serde(default, deserialize_with = "object_text")]
    pub properties: Option<Cow<'a, str>>,
    /// Accepted and ignored: the lake's partition column, so a file exported from the lake
    /// (e.g. DuckDB `COPY ... TO 'x.json'`) imports back.
    #[serde(default)]
    pub event_date: Option<serde::de::IgnoredAny>,
}

/// `properties` as JSON object text: an object is re-serialized, a string kept as given.
fn object_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'static, str>>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(Cow::Owned(text))),
        Some(object @ serde_json::Value::Object(_)) => Ok(Some(Cow::Owned(object.to_string()))),
        Some(_) => Err(serde::de::Error::custom(
            "wrong type: `properties` must be a JSON object",
        )),
    }
}

/// Deserialize an optional string, borrowing from the input when it has no escapes (serde's
/// derive always copies an `Option<Cow<str>>`).
fn borrowed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(Text)
        }
    }
    d.deserialize_option(Text)
}

/// Parse one NDJSON line (a JSON object with the SPEC §2 column names as keys).
// Inlined with `validate` into the import's parse loop: fewer copies of the ~400-byte structs
// from call to call (`memcpy` 5 % fewer instructions at 200k events).
#[inline]
pub fn parse_json_line(line: &str) -> Result<Event<'_>, String> {
    let raw: RawFields = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    validate(raw)
}

/// Keys dropped from `properties` (and from quarantined lines) because they carry personal
/// data: the lake keeps member ids only (operators' members did not agree to have emails or
/// names copied into analytics files).
///
/// Keys are compared by their words, whatever the case and separators: `emailAddress`,
/// `Email-Address` and `email_address` are all `email address`. A key is personal when its
/// last words spell one of [`PERSONAL_KEY_ENDINGS`] (`contact_email`, `billing_address`,
/// `userIP`, `firstName`) or when it is, whole, one of [`PERSONAL_KEYS`] (`name` alone: a
/// `channel_name` is kept). `[ingest] scrub_keys` adds endings ([`set_extra_personal_keys`]).
pub const PERSONAL_KEY_ENDINGS: &[&str] = &[
    "email",
    "mail",
    "email address",
    "ip",
    "ipv4",
    "ipv6",
    "ip address",
    "address",
    "first name",
    "last name",
    "full name",
    "real name",
    "display name",
    "user name",
    "username",
    "given name",
    "family name",
    "middle name",
    "nickname",
    "nick name",
    "surname",
    "phone",
    "phone number",
    "telephone",
    "mobile",
    "mobile number",
    "avatar",
    "avatar url",
    "avatar template",
    "birthday",
    "birthdate",
    "birth date",
    "date of birth",
    "dob",
];

/// Keys that are personal only as the whole key (see [`PERSONAL_KEY_ENDINGS`]).
pub const PERSONAL_KEYS: &[&str] = &["name", "login"];

/// Endings added by `[ingest] scrub_keys`, normalized (see [`normalized_key`]).
static EXTRA_PERSONAL_KEYS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Add `keys` (as written in `[ingest] scrub_keys`) to the personal key endings of this process.
pub fn set_extra_personal_keys(keys: &[String]) {
    let mut extra = EXTRA_PERSONAL_KEYS
        .write()
        .unwrap_or_else(|e| e.into_inner());
    *extra = keys.iter().map(|k| normalized_key(k)).collect();
}

/// The words of a key, lower-case: split at anything not a letter or digit and at camel-case
/// boundaries (`IPAddress` → `ip`, `address`).
fn key_words(key: &str) -> Vec<String> {
    let chars: Vec<char> = key.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1).copied();
        let boundary = c.is_uppercase()
            && prev.is_some_and(|p| {
                p.is_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_uppercase() && next.is_some_and(char::is_lowercase))
            });
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// A key's words joined without separators (`Email-Address` → `emailaddress`).
pub fn normalized_key(key: &str) -> String {
    key_words(key).concat()
}

/// [`PERSONAL_KEY_ENDINGS`] normalized.
static ENDINGS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    PERSONAL_KEY_ENDINGS
        .iter()
        .map(|k| k.replace(' ', ""))
        .collect()
});

/// Whether `key` names personal data (see [`PERSONAL_KEY_ENDINGS`]).
pub fn is_personal_key(key: &str) -> bool {
    let words = key_words(key);
    let whole = words.concat();
    if PERSONAL_KEYS.iter().any(|k| *k == whole) {
        return true;
    }
    let extra = EXTRA_PERSONAL_KEYS
        .read()
        .unwrap_or_else(|e| e.into_inner());
    (1..=words.len()).any(|n| {
        let ending = words[words.len() - n..].concat();
        ENDINGS.contains(&ending) || extra.contains(&ending)
    })
}

/// Remove personal keys (at any depth) from a JSON value; true when something was removed. A
/// string holding a JSON object (a `properties` as text) is scrubbed inside too.
pub fn scrub_personal(v: &mut serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(map) => {
            let before = map.len();
            map.retain(|k, _| !is_personal_key(k));
            let mut changed = map.len() != before;
            for child in map.values_mut() {
                changed |= scrub_personal(child);
            }
            changed
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .fold(false, |acc, x| scrub_personal(x) | acc),
        serde_json::Value::String(text) if text.trim_start().starts_with('{') => {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(mut inner) if inner.is_object() => {
                    let changed = scrub_personal(&mut inner);
                    if changed {
                        *text = inner.to_string();
                    }
                    changed
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Community ids name lake directories, so they are restricted to a portable set.
pub fn check_community_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with(['.', '_'])
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "community_id `{id}` must be 1–128 ASCII letters, digits, `-`, `_` or `.`, not starting with `.` or `_`"
        ))
    }
}

/// Strict RFC 3339 with an explicit offset, to microseconds since the epoch (UTC).
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let bytes = s.as_bytes();
    if bytes.len() < 19 || !matches!(bytes[10], b'T' | b't') {
        return Err(format!(
            "`{s}` is not an RFC 3339 timestamp such as 2026-11-23T09:30:00+08:00"
        ));
    }
    let last = *bytes.last().unwrap_or(&0);
    let has_offset = matches!(last, b'Z' | b'z') || {
        let tail = &bytes[bytes.len().saturating_sub(6)..];
        bytes.len() >= 25 && matches!(tail[0], b'+' | b'-') && tail[3] == b':'
    };
    if !has_offset {
        return Err(format!("`{s}` has no UTC offset (add `Z` or `+hh:mm`)"));
    }
    if let Some(micros) = common_timestamp(bytes) {
        return Ok(micros);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|e| format!("`{s}` is not a valid RFC 3339 timestamp: {e}"))
}

/// The timestamps nearly every input carries, `YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|±hh:mm)`, read
/// without chrono's general parser (a tenth of an import's parsing time): `None` for anything
/// else, including a leap second or an invalid date, which chrono then accepts or explains.
fn common_timestamp(b: &[u8]) -> Option<i64> {
    let digits = |at: usize, n: usize| -> Option<i64> {
        b.get(at..at + n)?.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let mut at = 19;
    let mut micros = 0;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        at = start;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let n = at - start;
        if !(1..=9).contains(&n) {
            return None;
        }
        let frac = digits(start, n.min(6))?;
        micros = frac * 10i64.pow(6u32.saturating_sub(n as u32));
    }
    let offset = match &b[at..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (digits(at + 1, 2)?, digits(at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    // chrono's date and time checks (an invalid date, a leap second: `None`, left to its parser).
    let local = chrono::NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)?
        .and_hms_opt(hour as u32, minute as u32, second as u32)?;
    let seconds = local.and_utc().timestamp() - offset * 60;
    Some(seconds * 1_000_000 + micros)
}

fn required<'a>(v: Option<Cow<'a, str>>, name: &str) -> Result<Cow<'a, str>, String> {
    match v {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(format!("required field `{name}` is empty")),
        None => Err(format!("missing required field `{name}`")),
    }
}

/// Empty optional strings mean "absent" (CSV cannot tell the two apart).
fn optional(v: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    v.filter(|s| !s.is_empty())
}

/// Turn raw fields into a valid event, or the reason why not (SPEC §2, §4.8).
#[inline]
pub fn validate(raw: RawFields<'_>) -> Result<Event<'_>, String> {
    let event_id = required(raw.event_id, "event_id")?;
    let source = required(raw.source, "source")?;
    let community_id = required(raw.community_id, "community_id")?;
    check_community_id(&community_id)?;
    let member_id = required(raw.member_id, "member_id")?;
    let type_text = required(raw.event_type, "event_type")?;
    let event_type: EventType = type_text
        .parse()
        .map_err(|_| format!("unknown event_type `{type_text}`"))?;
    let occurred_at = parse_timestamp(&required(raw.occurred_at, "occurred_at")?)
        .map_err(|e| format!("occurred_at: {e}"))?;
    let received_at = match optional(raw.received_at) {
        Some(t) => Some(parse_timestamp(&t).map_err(|e| format!("received_at: {e}"))?),
        None => None,
    };
    if let Some(a) = raw.amount_minor {
        if a < 0 {
            return Err(format!(
                "amount_minor must not be negative (got {a}); a refund is its own event type"
            ));
        }
    }
    let currency = optional(raw.currency);
    if let Some(c) = &currency {
        if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "currency `{c}` is not an ISO 4217 code such as CNY or USD"
            ));
        }
    }
    if matches!(event_type, EventType::Purchase | EventType::Refund)
        && (raw.amount_minor.is_none() || currency.is_none())
    {
        return Err(format!("a `{event_type}` needs amount_minor and currency"));
    }
    let properties = match optional(raw.properties) {
        None => None,
        Some(text) => {
            let mut value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("properties is not valid JSON: {e}"))?;
            if !value.is_object() {
                return Err("wrong type: `properties` must be a JSON object".into());
            }
            if scrub_personal(&mut value) {
                Some(Cow::Owned(value.to_string()))
            } else {
                Some(text)
            }
        }
    };
    Ok(Event {
        event_id,
        source,
        community_id,
        member_id,
        event_type,
        occurred_at,
        received_at,
        content_id: optional(raw.content_id),
        parent_id: optional(raw.parent_id),
        target_member_id: optional(raw.target_member_id),
        title: optional(raw.title),
        body: optional(raw.body),
        amount_minor: raw.amount_minor,
        currency,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"e1","source":"generic","community_id":"c1","member_id":"m1","event_type":"post","occurred_at":"2026-11-23T08:30:00+08:00","title":"Hi","body":"学习 Rust"}"#;

    #[test]
    fn every_event_type_parses_from_its_name_and_nothing_else_does() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            assert_eq!(t.as_str().to_uppercase().parse::<EventType>(), Err(()));
        }
        assert_eq!("".parse::<EventType>(), Err(()));
    }

    #[test]
    fn parses_a_good_line_with_offset() {
        let e = parse_json_line(GOOD).unwrap();
        assert_eq!(e.event_type, EventType::Post);
        // 08:30 at +08:00 is 00:30 UTC.
        assert_eq!(
            e.occurred_at,
            parse_timestamp("2026-11-23T00:30:00Z").unwrap()
        );
        assert_eq!(e.received_at, None);
        assert!(matches!(e.member_id, Cow::Borrowed(_)));
    }

    fn reason(line: &str) -> String {
        parse_json_line(line).unwrap_err()
    }

    #[test]
    fn rejects_with_reasons() {
        assert!(reason("{not json").starts_with("invalid JSON"));
        assert!(reason(&GOOD.replace(r#""member_id":"m1","#, ""))
            .contains("missing required field `member_id`"));
        assert!(
            reason(&GOOD.replace(r#""member_id":"m1""#, r#""member_id":"""#))
                .contains("`member_id` is empty")
        );
        assert!(
            reason(&GOOD.replace(r#""post""#, r#""Post""#)).contains("unknown event_type `Post`")
        );
        assert!(reason(&GOOD.replace("+08:00", "")).contains("no UTC offset"));
        assert!(reason(&GOOD.replace("2026-11-23T08", "2026-13-23T08")).contains("occurred_at"));
        assert!(
            reason(&GOOD.replace(r#""member_id":"m1""#, r#""member_id":7"#))
                .contains("invalid type")
        );
        assert!(
            reason(&GOOD.replace(r#""title":"Hi""#, r#""colour":"red""#))
                .contains("unknown field `colour`")
        );
        let purchase = GOOD.replace(r#""post""#, r#""purchase""#);
        assert!(reason(&purchase).contains("needs amount_minor and currency"));
        let negative = purchase.replace(r#""title":"Hi""#, r#""amount_minor":-5,"currency":"CNY""#);
        assert!(reason(&negative).contains("must not be negative"));
        let bad_currency =
            purchase.replace(r#""title":"Hi""#, r#""amount_minor":5,"currency":"rmb""#);
        assert!(reason(&bad_currency).contains("ISO 4217"));
        let bad_received = GOOD.replace(r#""title":"Hi""#, r#""received_at":"yesterday""#);
        assert!(reason(&bad_received).starts_with("received_at"));
        let bad_props = GOOD.replace(r#""title":"Hi""#, r#""properties":[1]"#);
        assert!(reason(&bad_props).contains("must be a JSON object"));
        assert!(reason(&GOOD.replace(r#""c1""#, r#""../etc""#)).contains("community_id"));
    }

    #[test]
    fn properties_accept_object_or_string_and_drop_personal_data() {
        let line = GOOD.replace(
            r#""title":"Hi""#,
            r#""properties":{"plan":"gold","Email":"a@b.c","user":{"name":"Ann","level":3}}"#,
        );
        let e = parse_json_line(&line).unwrap();
        assert_eq!(
            e.properties.as_deref(),
            Some(r#"{"plan":"gold","user":{"level":3}}"#)
        );
        let line = GOOD.replace(r#""title":"Hi""#, r#""properties":"{\"plan\":\"gold\"}""#);
        assert_eq!(
            parse_json_line(&line).unwrap().properties.as_deref(),
            Some(r#"{"plan":"gold"}"#)
        );
    }

    #[test]
    fn personal_keys_match_whatever_the_case_and_separators() {
        for key in [
            "email",
            "Email",
            "emailAddress",
            "email_address",
            "E-Mail",
            "contact_email",
            "firstName",
            "first_name",
            "Last-Name",
            "ipAddress",
            "IPAddress",
            "client_ip",
            "userIP",
            "PhoneNumber",
            "username",
            "userName",
            "name",
            "billing_address",
            "avatar_template",
        ] {
            assert!(is_personal_key(key), "{key}");
        }
        for key in [
            "channel",
            "channel_name",
            "plan",
            "zip",
            "vip",
            "email_verified",
            "topic_id",
            "livemode",
        ] {
            assert!(!is_personal_key(key), "{key}");
        }
        assert!(!is_personal_key("customerRef"));
        set_extra_personal_keys(&["customer_ref".into()]);
        assert!(is_personal_key("customerRef") && is_personal_key("billing-customer-ref"));
        set_extra_personal_keys(&[]);
        let mut v = serde_json::json!({"properties": "{\"emailAddress\":\"a@b.c\",\"plan\":1}", "x": [{"firstName": "Ann"}]});
        assert!(scrub_personal(&mut v));
        assert_eq!(v.to_string(), r#"{"properties":"{\"plan\":1}","x":[{}]}"#);
    }

    #[test]
    fn timestamps_are_strict() {
        assert!(parse_timestamp("2026-11-23T00:00:00Z").is_ok());
        assert!(parse_timestamp("2026-11-23T00:00:00.123456-05:00").is_ok());
        assert!(parse_timestamp("2026-11-23 00:00:00").is_err());
        assert!(parse_timestamp("2026-11-23").is_err());
        assert!(parse_timestamp("1700000000").is_err());
        assert!(parse_timestamp("2026-11-23T00:00:00+0800").is_err());
    }

    /// chrono's reading of a timestamp, the reference the fast path must agree with.
    fn chrono_micros(s: &str) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_micros())
    }

    #[test]
    fn the_fast_timestamp_path_reads_edges_as_chrono_does() {
        for s in [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "0000-03-01T00:00:00Z",
            "9999-12-31T23:59:59.123456789+14:00",
            "2024-02-29T12:00:00-00:30",
            "2000-02-29T23:30:00.5+08:00",
            "2026-11-23t00:00:00z",
            "2026-11-23T00:00:00.1234567Z",
        ] {
            assert_eq!(common_timestamp(s.as_bytes()), chrono_micros(s), "{s}");
        }
        // Not dates, or what chrono alone should judge: left to it.
        for s in [
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-31T00:00:00Z",
            "2026-11-23T24:00:00Z",
            "2026-12-31T23:59:60Z",
            "2026-11-23T00:00:00.Z",
            "2026-11-23T00:00:00.1234567890Z",
            "2026-11-23T00:00:00+24:00",
            "+026-11-23T00:00:00Z",
        ] {
            assert_eq!(common_timestamp(s.as_bytes()), None, "{s}");
        }
        assert!(
            parse_timestamp("2026-12-31T23:59:60Z").is_ok(),
            "a leap second, by chrono"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { failure_persistence: None, ..Default::default() })]

        /// A key hashed from the stack is the key the streaming hasher gives, short or long.
        #[test]
        fn dedupe_keys_do_not_depend_on_how_they_are_hashed(
            c in ".{0,40}", s in ".{0,20}", e in ".{0,300}",
        ) {
            proptest::prop_assert_eq!(dedupe_key(&c, &s, &e), dedupe_key_streamed([&c, &s, &e]));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]

        /// Wherever the fast path answers, chrono gives the same instant; on well-formed
        /// timestamps it always answers.
        #[test]
        fn fast_timestamps_agree_with_chrono(
            s in "[0-9]{4}-[01][0-9]-[0-3][0-9][Tt][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,10})?([Zz]|[+-][0-2][0-9]:[0-6][0-9])",
            (y, mo, d, h, mi, se) in (0i64..10000, 1u32..13, 1u32..29, 0u32..24, 0u32..60, 0u32..60),
        ) {
            if let Some(micros) = common_timestamp(s.as_bytes()) {
                proptest::prop_assert_eq!(Some(micros), chrono_micros(&s));
            }
            let valid = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}.25-03:30");
            proptest::prop_assert_eq!(common_timestamp(valid.as_bytes()), chrono_micros(&valid));
            proptest::prop_assert!(common_timestamp(valid.as_bytes()).is_some());
        }
    }
}
