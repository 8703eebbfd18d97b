//! Bytes in scenario files. Wherever a scenario takes a string that reaches the filter (header
//! names and values, method, path, authority, bodies, answers, properties), it also takes
//! `{"$bytes": "<base64>"}`: exactly those bytes (standard alphabet, padded). A plain string is
//! its UTF-8 bytes, and only a plain string has `${token}` replaced in it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A scenario string or an escaped byte string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bytes {
    /// A plain JSON string (`${token}` is replaced in it where the field allows).
    Text(String),
    /// `{"$bytes": "<base64>"}`, taken literally.
    Raw(Vec<u8>),
}

impl Bytes {
    /// The bytes as written, before any `${token}` replacement.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Text(s) => s.as_bytes(),
            Bytes::Raw(b) => b,
        }
    }

    /// The form a scenario file takes for `bytes`: a plain string when they are UTF-8 and hold
    /// no `${` (which a plain string would have replaced), else `{"$bytes": ...}`.
    pub fn to_json(bytes: &[u8]) -> Value {
        match std::str::from_utf8(bytes) {
            Ok(text) if !text.contains("${") => Value::String(text.into()),
            _ => escaped(bytes),
        }
    }
}

/// `{"$bytes": "<base64>"}`.
pub fn escaped(bytes: &[u8]) -> Value {
    json!({"$bytes": STANDARD.encode(bytes)})
}

/// How an actual value (a header the upstream received, a response body) shows in expectations
/// and messages: a string when it is UTF-8, else `{"$bytes": ...}`.
pub fn actual_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.into()),
        Err(_) => escaped(bytes),
    }
}

/// The bytes of `{"$bytes": "<base64>"}`: `None` when `value` is not that form, an error when
/// it is but the base64 is bad.
pub fn unescape(value: &Value) -> Option<Result<Vec<u8>, String>> {
    let map: &Map<String, Value> = value.as_object().filter(|m| m.len() == 1)?;
    let arg = map.get("$bytes")?;
    Some(match arg.as_str() {
        Some(b64) => STANDARD
            .decode(b64)
            .map_err(|e| format!("$bytes: not standard padded base64 ({e})")),
        None => Err("$bytes: expected a base64 string".into()),
    })
}

/// The bytes `value` stands for: a plain string's UTF-8 or an escape's content.
pub fn from_json(value: &Value) -> Result<Bytes, String> {
    match value {
        Value::String(s) => Ok(Bytes::Text(s.clone())),
        other => match unescape(other) {
            Some(bytes) => bytes.map(Bytes::Raw),
            None => Err(format!(
                "expected a string or {{\"$bytes\": \"<base64>\"}}, not {other}"
            )),
        },
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_json(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Header pairs: an object `{name: value}` or a list of `[name, value]` pairs (repeated names,
/// or names that are not UTF-8). Names and values are [`Bytes`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(Bytes, Bytes)>);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let pairs = match Value::deserialize(d)? {
            Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| {
                    from_json(&v)
                        .map(|v| (Bytes::Text(k.clone()), v))
                        .map_err(|e| format!("header {k:?}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>(),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, pair)| {
                    match pair.as_array().map(Vec::as_slice) {
                        Some([k, v]) => Ok((from_json(k)?, from_json(v)?)),
                        _ => Err("a list of headers holds [name, value] pairs".to_string()),
                    }
                    .map_err(|e| format!("[{i}]: {e}"))
                })
                .collect(),
            _ => Err("headers: an object or a list of [name, value] pairs".into()),
        };
        pairs.map(Headers).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            parse::<Bytes>(json!("Bearer x")).unwrap(),
            Bytes::Text("Bearer x".into())
        );
        assert_eq!(
            parse::<Bytes>(json!({"$bytes": "/wBh"})).unwrap(),
            Bytes::Raw(vec![0xff, 0, b'a'])
        );
        assert_eq!(
            parse::<Bytes>(json!({"$bytes": ""})).unwrap().as_slice(),
            b""
        );
        let bad = parse::<Bytes>(json!({"$bytes": "/w"})).unwrap_err();
        assert!(bad.contains("base64"), "{bad}");
        assert!(parse::<Bytes>(json!({"$bytes": 1})).is_err());
        assert!(parse::<Bytes>(json!({"$bytes": "eA==", "x": 1})).is_err());
        assert!(parse::<Bytes>(json!(7)).is_err());
    }

    #[test]
    fn writing_round_trips() {
        for bytes in [&b"plain"[..], b"\xff\xfe", b"a${b}", b"", b"\xc3\x28"] {
            let written = Bytes::to_json(bytes);
            assert_eq!(parse::<Bytes>(written).unwrap().as_slice(), bytes);
        }
        assert_eq!(Bytes::to_json(b"plain"), json!("plain"));
        assert_eq!(Bytes::to_json(b"${x}"), json!({"$bytes": "JHt4fQ=="}));
        assert_eq!(actual_json(b"${x}"), json!("${x}"));
        assert_eq!(actual_json(b"\xff"), json!({"$bytes": "/w=="}));
    }

    #[test]
    fn headers_as_object_or_pairs() {
        let h: Headers = parse(json!({"x-a": "1", "x-b": {"$bytes": "/w=="}})).unwrap();
        assert_eq!(h.0[1].1.as_slice(), b"\xff");
        let h: Headers = parse(json!([[{"$bytes": "gA=="}, "v"], ["x", "y"]])).unwrap();
        assert_eq!(h.0[0].0.as_slice(), b"\x80");
        let err = parse::<Headers>(json!([["x"]])).unwrap_err();
        assert!(err.contains("[0]"), "{err}");
        let err = parse::<Headers>(json!({"x": 1})).unwrap_err();
        assert!(err.contains("header \"x\""), "{err}");
    }
}
