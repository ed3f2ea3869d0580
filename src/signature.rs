//! Webhook signature schemes, shared by the receiver ([`crate::ingest::server`] verifies) and
//! the webhook sink ([`crate::sinks::webhook`] signs). Verified on the raw body bytes in
//! constant time (HMAC's own `verify_slice`): Standard Webhooks, Discourse and Stripe.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a signed timestamp may be from now (Standard Webhooks and Stripe use 5 minutes).
pub const TOLERANCE_SECS: i64 = 300;

fn mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes any key length")
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`: a Standard Webhooks signature.
pub fn standard_sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut m = mac(key);
    m.update(format!("{id}.{timestamp}.").as_bytes());
    m.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
    )
}

/// The key of a `whsec_…` secret (base64 after the prefix).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .trim()
        .strip_prefix("whsec_")
        .unwrap_or(secret.trim());
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("is not a base64 `whsec_…` secret ({e})"))
}

/// Verify Standard Webhooks headers: a timestamp within tolerance of `now` and any `v1,`
/// signature (space separated, as during key rotation) that matches.
pub fn standard_verify(
    key: &[u8],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), &'static str> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| "bad webhook-timestamp")?;
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err("webhook-timestamp outside the 5-minute tolerance");
    }
    for sig in signatures.split_whitespace() {
        let Some(encoded) = sig.strip_prefix("v1,") else {
            continue;
        };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            continue;
        };
        let mut m = mac(key);
        m.update(format!("{id}.{ts}.").as_bytes());
        m.update(body);
        if m.verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err("no matching webhook-signature")
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Verify `X-Discourse-Event-Signature: sha256=<hex HMAC-SHA256 of the body>`.
pub fn discourse_verify(secret: &[u8], header: &str, body: &[u8]) -> Result<(), &'static str> {
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or("signature must start with sha256=")?;
    let bytes = hex_decode(hex).ok_or("signature is not hex")?;
    let mut m = mac(secret);
    m.update(body);
    m.verify_slice(&bytes)
        .map_err(|_| "signature does not match")
}

/// Verify `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]` over `t.body`, within tolerance.
pub fn stripe_verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), &'static str> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.push(v),
            _ => {}
        }
    }
    let t = timestamp.ok_or("no t= in Stripe-Signature")?;
    if (now - t).abs() > TOLERANCE_SECS {
        return Err("Stripe-Signature timestamp outside the 5-minute tolerance");
    }
    for candidate in candidates {
        let Some(bytes) = hex_decode(candidate) else {
            continue;
        };
        let mut m = mac(secret);
        m.update(format!("{t}.").as_bytes());
        m.update(body);
        if m.verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err("no matching v1 signature")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/signature_test_vectors.json"
        ))
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn standard_webhooks_official_vectors() {
        let v = vectors();
        for name in [
            "standardwebhooks_official",
            "standardwebhooks_computed_ranked_members",
        ] {
            let v = &v[name];
            let h = &v["headers"];
            let key = decode_secret(v["secret"].as_str().unwrap()).unwrap();
            let (id, ts) = (
                h["webhook-id"].as_str().unwrap(),
                h["webhook-timestamp"].as_str().unwrap(),
            );
            let body = v["body"].as_str().unwrap().as_bytes();
            let sig = h["webhook-signature"].as_str().unwrap();
            assert_eq!(
                standard_sign(&key, id, ts.parse().unwrap(), body),
                sig,
                "{name}"
            );
            let now = ts.parse().unwrap();
            assert_eq!(standard_verify(&key, id, ts, sig, body, now), Ok(()));
            assert!(standard_verify(&key, id, ts, sig, &[body, b" "].concat(), now).is_err());
            assert!(standard_verify(&key, id, ts, sig, body, now + 301).is_err());
            // A rotated key: the old and the new signature are both sent; one matching is enough.
            let both = format!("v1,AAAA {sig}");
            assert_eq!(standard_verify(&key, id, ts, &both, body, now), Ok(()));
        }
    }

    #[test]
    fn discourse_vectors() {
        let v = vectors();
        for name in [
            "discourse_official_ping",
            "discourse_computed_user_badge_granted",
        ] {
            let v = &v[name];
            let header = v["headers"]["X-Discourse-Event-Signature"]
                .as_str()
                .unwrap();
            let secret = v["secret"].as_str().unwrap().as_bytes();
            assert_eq!(
                discourse_verify(secret, header, v["body"].as_str().unwrap().as_bytes()),
                Ok(()),
                "{name}"
            );
        }
        let bad = &v["discourse_negative_tampered"];
        let header = bad["headers"]["X-Discourse-Event-Signature"]
            .as_str()
            .unwrap();
        assert!(discourse_verify(
            bad["secret"].as_str().unwrap().as_bytes(),
            header,
            bad["body"].as_str().unwrap().as_bytes()
        )
        .is_err());
    }

    #[test]
    fn stripe_vectors() {
        let v = vectors();
        for name in [
            "stripe_computed_invoice_paid",
            "stripe_computed_rotation_two_v1",
        ] {
            let v = &v[name];
            let header = v["headers"]["Stripe-Signature"].as_str().unwrap();
            let t: i64 = header
                .split(',')
                .find_map(|p| p.strip_prefix("t="))
                .unwrap()
                .parse()
                .unwrap();
            let secret = v["secret"].as_str().unwrap().as_bytes();
            let body = v["body"].as_str().unwrap().as_bytes();
            assert_eq!(
                stripe_verify(secret, header, body, t + 10),
                Ok(()),
                "{name}"
            );
            assert!(
                stripe_verify(secret, header, body, t + 301).is_err(),
                "{name} stale"
            );
        }
    }
}
