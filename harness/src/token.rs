//! Minting compact JWS tokens from a header, claims and a named key.

use anyhow::{Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value};

use crate::keys::NamedKey;
use crate::time;

/// Claims whose string values may be relative times (`"+1h"`, `"-5m"`, `"now"`).
const TIME_CLAIMS: [&str; 4] = ["exp", "nbf", "iat", "auth_time"];

/// What to do to the signature after signing, for malformed-token cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// `header.payload.` (signature removed).
    StripSignature,
    /// The signature's last byte flipped.
    FlipSignature,
}

/// Mints `base64url(header).base64url(claims).base64url(signature)`.
///
/// The header defaults to `{"alg": <key default>, "typ": "JWT", "kid": <key kid>}`; fields given
/// in `header` override those, and a `null` field removes it. Time claims given as relative
/// strings are resolved against `now_s` (Unix seconds). `alg: "none"` gives an empty signature.
pub fn mint(
    key: &NamedKey,
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    now_s: i64,
    tamper: Option<Tamper>,
) -> Result<String> {
    let claims = resolve_times(claims, now_s)?;
    mint_raw(
        key,
        header,
        Value::Object(claims).to_string().as_bytes(),
        tamper,
    )
}

/// Like [`mint`] with the payload given as raw bytes (duplicate keys, deep nesting, numbers
/// out of range: what a JSON map cannot hold).
pub fn mint_raw(
    key: &NamedKey,
    header: &Map<String, Value>,
    payload: &[u8],
    tamper: Option<Tamper>,
) -> Result<String> {
    let mut h = Map::new();
    h.insert("alg".into(), key.default_alg().into());
    h.insert("typ".into(), "JWT".into());
    h.insert("kid".into(), key.kid.clone().into());
    for (k, v) in header {
        if v.is_null() {
            h.remove(k);
        } else {
            h.insert(k.clone(), v.clone());
        }
    }
    let input = format!(
        "{}.{}",
        B64.encode(Value::Object(h.clone()).to_string()),
        B64.encode(payload)
    );
    let alg = h.get("alg").and_then(Value::as_str).unwrap_or("");
    let mut sig = if alg.eq_ignore_ascii_case("none") {
        Vec::new()
    } else {
        key.sign(alg, input.as_bytes())?
    };
    match tamper {
        Some(Tamper::StripSignature) => sig.clear(),
        Some(Tamper::FlipSignature) => {
            if let Some(last) = sig.last_mut() {
                *last ^= 0x01;
            }
        }
        None => {}
    }
    Ok(format!("{input}.{}", B64.encode(sig)))
}

/// Replaces relative time strings in the time claims by `now_s` plus the offset, and drops
/// claims set to `null`.
pub fn resolve_times(claims: &Map<String, Value>, now_s: i64) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for (k, v) in claims {
        match v {
            Value::Null => {}
            Value::String(s) if TIME_CLAIMS.contains(&k.as_str()) && time::is_relative(s) => {
                out.insert(k.clone(), (now_s + time::parse_millis(s)? / 1000).into());
            }
            Value::String(s) if TIME_CLAIMS.contains(&k.as_str()) && s.starts_with(['+', '-']) => {
                bail!("claim {k}: bad relative time {s:?}");
            }
            other => {
                out.insert(k.clone(), other.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRing;
    use serde_json::json;
    use std::path::Path;

    fn part(token: &str, i: usize) -> Value {
        let seg = token.split('.').nth(i).unwrap();
        serde_json::from_slice(&B64.decode(seg).unwrap()).unwrap()
    }

    #[test]
    fn relative_times_header_overrides_and_tampering() {
        let mut ring = KeyRing::default();
        let key = ring.get("ec256:t", Path::new(".")).unwrap();
        let claims = json!({"sub": "u", "exp": "+1h", "iat": "-5m", "aud": null});
        let header = json!({"typ": "at+jwt", "kid": null});
        let t = mint(
            &key,
            header.as_object().unwrap(),
            claims.as_object().unwrap(),
            1000,
            None,
        )
        .unwrap();
        assert_eq!(part(&t, 0), json!({"alg": "ES256", "typ": "at+jwt"}));
        assert_eq!(part(&t, 1), json!({"sub": "u", "exp": 4600, "iat": 700}));
        let stripped = mint(
            &key,
            &Map::new(),
            &Map::new(),
            0,
            Some(Tamper::StripSignature),
        )
        .unwrap();
        assert!(stripped.ends_with('.'));
        let bad = json!({"exp": "+1y"});
        assert!(mint(&key, &Map::new(), bad.as_object().unwrap(), 0, None).is_err());
    }
}
