//! Compact JWS parsing (RFC 7515) and the header rules of RFC 8725, all before any crypto:
//! three canonical base64url segments, a JSON object header without duplicates, a known
//! algorithm, no critical extensions, no unencoded payloads, no nesting. Keys named by an
//! access token itself (`jku`, `x5u`, `x5c`, `jwk`) are never read; only a DPoP proof's
//! `jwk` is (`parse_with_key`), since that key is what the proof proves possession of.

use crate::jose::alg::Algorithm;
use crate::jose::base64url;
use crate::jose::json;
use serde_json::{Map, Value};

/// A token that passed the format checks; the signature is not verified yet.
#[derive(Debug)]
pub struct Jws<'t> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// The decoded payload bytes (claims are parsed by `claims()`).
    pub payload: Vec<u8>,
    /// The base64url payload segment, as received (for `forward_payload_header`).
    pub payload_b64: &'t str,
    /// `header "." payload`: the bytes the signature covers.
    pub signing_input: &'t str,
    pub signature: Vec<u8>,
}

/// Why a token is not a well-formed JWS. The message is safe to show the client: it
/// never contains token material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub &'static str);

/// Parses a compact JWS and applies every rule that needs no key.
pub fn parse(token: &str) -> Result<Jws<'_>, FormatError> {
    parse_with_header(token).map(|(jws, _)| jws)
}

/// `parse`, and the header's `jwk` (for a DPoP proof, which carries its own key; an access
/// token's `jwk` is never read).
pub fn parse_with_key(token: &str) -> Result<(Jws<'_>, Option<Value>), FormatError> {
    parse_with_header(token).map(|(jws, header)| (jws, header.get("jwk").cloned()))
}

fn parse_with_header(token: &str) -> Result<(Jws<'_>, Map<String, Value>), FormatError> {
    if token.starts_with('{') {
        return Err(FormatError("JSON serialization is not accepted"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(FormatError(if token.split('.').count() == 5 {
            "Encrypted tokens (JWE) are not accepted"
        } else {
            "Invalid Compact JWS"
        }));
    };
    // `header.payload`: the token up to its last `.` (always there, and a char boundary).
    let signing_input = token
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(FormatError("Invalid Compact JWS"))?;

    let header = base64url::decode(header_b64)
        .and_then(|b| json::parse_object(&b).ok())
        .ok_or(FormatError("Invalid Compact JWS"))?;
    let alg = header_alg(&header)?;
    let kid = header_string(&header, "kid")?;
    let typ = header_string(&header, "typ")?;
    if header.contains_key("crit") {
        return Err(FormatError("Unsupported 'crit' header parameter"));
    }
    if header.get("b64").is_some_and(|b| b != &Value::Bool(true)) {
        return Err(FormatError("Unencoded payloads ('b64') are not accepted"));
    }
    if header_string(&header, "cty")?.is_some_and(|c| c.eq_ignore_ascii_case("jwt")) {
        return Err(FormatError("Nested tokens are not accepted"));
    }
    if header.contains_key("enc") {
        return Err(FormatError("Encrypted tokens (JWE) are not accepted"));
    }

    let payload = base64url::decode(payload_b64).ok_or(FormatError("Invalid Compact JWS"))?;
    let signature = base64url::decode(signature_b64).ok_or(FormatError("Invalid Compact JWS"))?;
    if signature.is_empty() {
        return Err(FormatError("Missing signature"));
    }
    let jws = Jws {
        alg,
        kid,
        typ,
        payload,
        payload_b64,
        signing_input,
        signature,
    };
    Ok((jws, header))
}

impl Jws<'_> {
    /// The payload as a JWT claims set: a JSON object, strictly parsed.
    pub fn claims(&self) -> Result<Map<String, Value>, FormatError> {
        json::parse_object(&self.payload).map_err(|_| FormatError("Invalid JWT Claims Set"))
    }
}

fn header_alg(header: &Map<String, Value>) -> Result<Algorithm, FormatError> {
    match header.get("alg") {
        // `none` in every spelling ends here too: it is not an algorithm we know.
        Some(Value::String(name)) => name
            .parse()
            .map_err(|_| FormatError("Unexpected 'alg' value")),
        Some(_) => Err(FormatError("Unexpected 'alg' value")),
        None => Err(FormatError("Missing 'alg' header parameter")),
    }
}

fn header_string(
    header: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, FormatError> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FormatError(match name {
            "kid" => "Invalid 'kid' header parameter",
            "typ" => "Invalid 'typ' header parameter",
            _ => "Invalid header parameter",
        })),
    }
}

#[cfg(test)]
#[allow(clippy::string_slice, reason = "test code")]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(v: &Value) -> String {
        base64url::encode(v.to_string().as_bytes())
    }

    fn token(header: Value) -> String {
        format!("{}.{}.c2ln", b64(&header), b64(&json!({"sub": "x"})))
    }

    /// The first format error, claims included.
    fn err(token: &str) -> &'static str {
        parse(token).and_then(|jws| jws.claims()).unwrap_err().0
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(
            json!({"alg": "RS256", "kid": "k1", "typ": "at+jwt", "jku": "http://evil", "x5u": "u", "jwk": {}}),
        );
        let jws = parse(&t).unwrap();
        assert_eq!(jws.alg, Algorithm::RS256);
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.typ.as_deref(), Some("at+jwt"));
        assert_eq!(jws.claims().unwrap()["sub"], "x");
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, &t[..t.rfind('.').unwrap()]);
    }

    #[test]
    fn alg_none_in_every_spelling_is_refused() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = b64(&json!({"alg": alg}));
            let payload = b64(&json!({"sub": "x"}));
            for t in [
                format!("{header}.{payload}."),
                format!("{header}.{payload}"),
                format!("{header}.{payload}.c2ln"),
            ] {
                assert!(parse(&t).is_err(), "{alg}: {t}");
            }
        }
    }

    #[test]
    fn header_rules() {
        assert_eq!(err(&token(json!({"alg": 256}))), "Unexpected 'alg' value");
        assert_eq!(err(&token(json!({"alg": "RS1"}))), "Unexpected 'alg' value");
        assert_eq!(
            err(&token(json!({"kid": "a"}))),
            "Missing 'alg' header parameter"
        );
        assert_eq!(
            err(&token(json!({"alg": "RS256", "kid": 1}))),
            "Invalid 'kid' header parameter"
        );
        assert_eq!(
            err(&token(json!({"alg": "RS256", "kid": ["a"]}))),
            "Invalid 'kid' header parameter"
        );
        assert_eq!(
            err(&token(json!({"alg": "RS256", "crit": ["exp"]}))),
            "Unsupported 'crit' header parameter"
        );
        assert_eq!(
            err(&token(json!({"alg": "RS256", "crit": []}))),
            "Unsupported 'crit' header parameter"
        );
        assert_eq!(
            err(&token(json!({"alg": "RS256", "b64": false}))),
            "Unencoded payloads ('b64') are not accepted"
        );
        assert!(parse(&token(json!({"alg": "RS256", "b64": true}))).is_ok());
        assert_eq!(
            err(&token(json!({"alg": "RS256", "cty": "JWT"}))),
            "Nested tokens are not accepted"
        );
        assert_eq!(
            err(&token(json!({"alg": "RS256", "enc": "A128GCM"}))),
            "Encrypted tokens (JWE) are not accepted"
        );
    }

    #[test]
    fn duplicate_header_or_claim_keys_are_refused() {
        let header = base64url::encode(br#"{"alg":"RS256","alg":"HS256"}"#);
        let payload = b64(&json!({"sub": "x"}));
        assert!(parse(&format!("{header}.{payload}.c2ln")).is_err());
        let header = b64(&json!({"alg": "RS256"}));
        let payload = base64url::encode(br#"{"exp":1,"exp":9999999999}"#);
        assert_eq!(
            err(&format!("{header}.{payload}.c2ln")),
            "Invalid JWT Claims Set"
        );
    }

    #[test]
    fn shape_rules() {
        let good = token(json!({"alg": "RS256"}));
        let (head, sig) = good.rsplit_once('.').unwrap();
        assert_eq!(err(&format!("{head}.")), "Missing signature");
        assert_eq!(err(head), "Invalid Compact JWS");
        assert_eq!(
            err(&format!("{good}.x.y")),
            "Encrypted tokens (JWE) are not accepted"
        );
        assert_eq!(err(&format!("{good}.x")), "Invalid Compact JWS");
        assert_eq!(err(&format!("{head}.{sig}=")), "Invalid Compact JWS");
        assert_eq!(
            err(r#"{"payload":"x","signatures":[]}"#),
            "JSON serialization is not accepted"
        );
        assert_eq!(err(&".".repeat(1 << 20)), "Invalid Compact JWS");
        let header = b64(&json!({"alg": "RS256"}));
        assert_eq!(
            err(&format!("{header}.{}.c2ln", b64(&json!([1])))),
            "Invalid JWT Claims Set"
        );
        assert_eq!(err(&format!("{header}..c2ln")), "Invalid JWT Claims Set");
        let deep = base64url::encode("[".repeat(10_000).as_bytes());
        assert_eq!(
            err(&format!("{header}.{deep}.c2ln")),
            "Invalid JWT Claims Set"
        );
    }
}
