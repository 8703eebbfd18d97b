//! Strict JSON parsing for everything that crosses a trust boundary (token header and
//! payload, key sets, discovery documents, the configuration).
//!
//! `serde_json::Value` silently keeps the last of duplicate object keys; a verifier that
//! reads `{"alg":"RS256","alg":"none"}` differently from the issuer's signer is open to
//! confusion attacks, so duplicates are an error here. Nesting depth is bounded before
//! parsing so that hostile input cannot make the parser recurse deeply.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt::{self, Write};

/// Deepest nesting accepted (objects and arrays). Tokens and key sets are flat; 32 leaves
/// room for configurations and nested claims.
pub const MAX_DEPTH: usize = 32;

/// Parses `bytes` as one JSON value: UTF-8 only, no duplicate keys, bounded depth.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    if nesting_depth(bytes) > MAX_DEPTH {
        return Err(format!("JSON nested deeper than {MAX_DEPTH} levels"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value.0)
}

/// Parses `bytes` and requires a JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match parse(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err("expected a JSON object".to_string()),
    }
}

/// The deepest bracket nesting in `bytes`, ignoring brackets inside strings. Linear, no
/// allocation; malformed input is left for the parser to reject.
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A string as error messages show it: in double quotes, with `"`, `\` and control
/// characters escaped as Rust's `{:?}` escapes them (`\"`, `\n`, `\u{1}`), and every
/// character beyond ASCII as `\u{e9}`. Unlike `{:?}`, which keeps the printable ones as they
/// are, it needs no Unicode tables (which characters are printable) in the module.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\0' => f.write_str("\\0")?,
                '\t' => f.write_str("\\t")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                ' '..='~' => f.write_char(c)?,
                _ => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
        }
        f.write_char('"')
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let StrictValue(value) = access.next_value()?;
            if map.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format_args!("duplicate key '{key}'")));
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        assert!(parse(br#"{"alg":"RS256","alg":"none"}"#).is_err());
        assert!(parse(br#"{"a":{"b":1,"b":2}}"#).is_err());
        assert!(parse(br#"[{"b":1},{"b":2}]"#).is_ok());
    }

    #[test]
    fn depth_is_bounded_before_parsing() {
        let deep = "[".repeat(10_000);
        assert!(
            parse(deep.as_bytes())
                .unwrap_err()
                .contains("nested deeper")
        );
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes()).is_ok());
        // Brackets inside strings do not count.
        let quoted = format!("\"{}\"", "[".repeat(100));
        assert!(parse(quoted.as_bytes()).is_ok());
    }

    #[test]
    fn invalid_utf8_and_trailing_data_are_rejected() {
        assert!(parse(b"{\"a\":\"\xff\"}").is_err());
        assert!(parse(b"{} {}").is_err());
        assert!(parse_object(b"[1]").is_err());
    }

    #[test]
    fn huge_numbers_parse_without_overflow() {
        let v = parse(br#"{"a":1e308,"b":18446744073709551616,"c":-1}"#).unwrap();
        assert_eq!(v["a"].as_f64(), Some(1e308));
        assert!(v["b"].as_f64().unwrap() > 1.8e19);
        assert_eq!(v["c"].as_i64(), Some(-1));
    }

    #[test]
    fn quoted_is_debug_for_ascii_and_escapes_the_rest() {
        // Every ASCII character, alone and in text, as `{:?}` writes it.
        for c in (0u8..128).map(char::from) {
            let text = format!("a{c}b");
            assert_eq!(Quoted(&text).to_string(), format!("{text:?}"), "{c:?}");
        }
        assert_eq!(Quoted(r#"say "hi"\"#).to_string(), r#""say \"hi\"\\""#);
        assert_eq!(Quoted("").to_string(), r#""""#);
        // Beyond ASCII, printable or not, as `\u{..}`.
        assert_eq!(
            Quoted("é\u{200b}\u{10ffff}x").to_string(),
            r#""\u{e9}\u{200b}\u{10ffff}x""#
        );
    }
}
