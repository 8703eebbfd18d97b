//! The seeded random source and the mutations: bytes, tokens, call answers and
//! configurations.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::{Value, json};

use crate::scenario::bytes::Bytes;

/// A deterministic random source: case `n` of seed `s` always draws the same numbers.
pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64, case: u64) -> Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(case);
        Rng(rng)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.0.next_u64() % n as u64) as usize
        }
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    fn byte(&mut self) -> u8 {
        self.0.next_u32() as u8
    }
}

/// Byte sequences that break parsers: invalid UTF-8 (lone continuation, overlong, surrogate,
/// beyond U+10FFFF, truncated), NUL and line breaks, separators, encodings, a BOM.
const NASTY: &[&[u8]] = &[
    b"\xff",
    b"\x80",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\x00",
    b"\r\n",
    b"\t",
    b" ",
    b",",
    b";",
    b"=",
    b"\"",
    b"\\",
    b"/",
    b"..",
    b".",
    b"%",
    b"%00",
    b"%ff",
    b"%2e%2e",
    b"%2F",
    b"?",
    b"#",
    b"Bearer ",
    b"bearer  ",
    b"\xef\xbb\xbf",
    b"{}",
    b"[]",
    b"null",
    b"1e308",
    b"-1",
    b"18446744073709551616",
];

/// `input` after one to three mutations; `dict` holds strings worth splicing in.
pub fn bytes(rng: &mut Rng, input: &[u8], dict: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(11) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = if rng.chance(50) {
                    0x80 | rng.byte()
                } else {
                    rng.byte()
                };
            }
            1 | 2 => {
                let nasty = rng.pick(NASTY).copied().unwrap_or_default();
                out.splice(at..at, nasty.iter().copied());
            }
            3 => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                let copy = out[at.min(end)..end].to_vec();
                out.splice(at..at, copy);
            }
            5 => out.truncate(at),
            6 => {
                if let Some(word) = rng.pick(dict) {
                    out.splice(at..at, word.iter().copied());
                }
            }
            7 => out = rng.pick(dict).cloned().unwrap_or_default(),
            8 if rng.chance(10) => {
                // Huge: past header limits and buffer sizes a filter may assume.
                let unit = if out.is_empty() { b"A".to_vec() } else { out };
                out = unit.repeat(1 + (16 * 1024 + rng.below(64 * 1024)) / unit.len());
            }
            9 if rng.chance(30) => out.clear(),
            _ => out.make_ascii_uppercase(),
        }
    }
    out
}

/// A mutation of the compact JWS `token`: its header or payload JSON edited and re-encoded,
/// segments swapped with `others`' or dropped or added, or its bytes mutated.
pub fn token(rng: &mut Rng, token: &[u8], others: &[Vec<u8>], dict: &[Vec<u8>]) -> Vec<u8> {
    let mut parts: Vec<Vec<u8>> = token.split(|b| *b == b'.').map(<[u8]>::to_vec).collect();
    match rng.below(6) {
        0 | 1 if !parts.is_empty() => {
            let i = rng.below(parts.len().min(2));
            if let Some(edited) = edit_json_segment(rng, &parts[i], dict) {
                parts[i] = edited;
            }
        }
        2 => {
            if let Some(other) = rng.pick(others) {
                let theirs: Vec<&[u8]> = other.split(|b| *b == b'.').collect();
                let i = rng.below(parts.len().min(theirs.len()));
                if let (Some(mine), Some(t)) = (parts.get_mut(i), theirs.get(i)) {
                    *mine = t.to_vec();
                }
            }
        }
        3 => match rng.below(3) {
            0 => {
                parts.pop();
            }
            1 => parts.push(Vec::new()),
            _ => parts.extend([b"e30".to_vec(), b"e30".to_vec()]),
        },
        _ => {
            let i = rng.below(parts.len());
            if let Some(part) = parts.get_mut(i) {
                *part = bytes(rng, part, dict);
            }
        }
    }
    parts.join(&b'.')
}

/// A base64url JSON segment with one member changed, added or removed.
fn edit_json_segment(rng: &mut Rng, segment: &[u8], dict: &[Vec<u8>]) -> Option<Vec<u8>> {
    let decoded = URL_SAFE_NO_PAD.decode(segment).ok()?;
    let mut object = match serde_json::from_slice::<Value>(&decoded).ok()? {
        Value::Object(map) => map,
        _ => return None,
    };
    let keys: Vec<String> = object.keys().cloned().collect();
    let values = [
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1e300),
        json!(u64::MAX),
        json!(""),
        json!("none"),
        json!("HS256"),
        json!("RS512"),
        json!("ES256"),
        json!([]),
        json!({}),
        json!(["a", 1]),
        json!("\u{fffd}\u{0}"),
    ];
    let value = rng.pick(&values).cloned().unwrap_or_default();
    match (rng.below(3), rng.pick(&keys)) {
        (0, Some(key)) => {
            object.remove(key);
        }
        (1, _) => {
            let word = rng.pick(dict).cloned().unwrap_or_default();
            object.insert(String::from_utf8_lossy(&word).into_owned(), value);
        }
        (_, Some(key)) => {
            object.insert(key.clone(), value);
        }
        (_, None) => {}
    }
    let text = serde_json::to_vec(&object).ok()?;
    let text = if rng.chance(20) {
        bytes(rng, &text, dict)
    } else {
        text
    };
    Some(URL_SAFE_NO_PAD.encode(text).into_bytes())
}

/// A call answer a broken or hostile server might give, as scenario JSON. `good` is what the
/// route answers normally (mutated for near misses).
pub fn answer(rng: &mut Rng, good: &[u8], dict: &[Vec<u8>]) -> Value {
    match rng.below(12) {
        0 => json!({"fail": "hang"}),
        1 => json!({"fail": "reset", "delay": format!("{}ms", rng.below(3000))}),
        2 => json!({"fail": "unreachable"}),
        _ => {
            let statuses = [
                200, 200, 200, 201, 204, 301, 304, 400, 404, 429, 500, 503, 0, 999,
            ];
            let status = match rng.below(8) {
                0 => Bytes::to_json(&bytes(rng, b"200", dict)),
                _ => json!(rng.pick(&statuses).copied().unwrap_or(200)),
            };
            let body = match rng.below(6) {
                0 => Vec::new(),
                1 if rng.chance(20) => b"{\"keys\":[".repeat(120_000),
                _ => bytes(rng, good, dict),
            };
            let mut headers = Vec::new();
            for _ in 0..rng.below(4) {
                let names: [&[u8]; 4] = [
                    b"content-type",
                    b"content-length",
                    b"cache-control",
                    b"x-odd",
                ];
                let name = rng.pick(&names).copied().unwrap_or_default();
                let name = if rng.chance(20) {
                    bytes(rng, name, dict)
                } else {
                    name.to_vec()
                };
                let value = bytes(rng, b"application/json; max-age=60", dict);
                headers.push(json!([Bytes::to_json(&name), Bytes::to_json(&value)]));
            }
            let mut answer =
                json!({"status": status, "headers": headers, "body": Bytes::to_json(&body)});
            if rng.chance(20) {
                answer["delay"] = json!(format!("{}ms", rng.below(6000)));
            }
            answer
        }
    }
}

/// What [`config`] did to a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigMutation {
    /// A member removed.
    Drop,
    /// A member written twice (the document becomes text: the second value is a mutated one).
    Duplicate,
    /// A member's value replaced by one of another JSON type.
    Retype,
}

/// A near-valid configuration from `config`: one member somewhere in it (any depth) dropped,
/// duplicated or given another type. `None` when it has no member. A document with `$`
/// placeholders (keys the runner fills in) is not turned into text, so it is never
/// duplicated.
pub fn config(rng: &mut Rng, config: &Value) -> Option<(Value, ConfigMutation)> {
    let mut paths = Vec::new();
    members(config, &mut Vec::new(), &mut paths);
    let path = rng.pick(&paths)?.clone();
    let placeholders = config.to_string().contains("\"$");
    let kind = match rng.below(3) {
        0 => ConfigMutation::Drop,
        1 if !placeholders => ConfigMutation::Duplicate,
        _ => ConfigMutation::Retype,
    };
    let mut out = config.clone();
    let (last, parents) = path.split_last()?;
    let mut at = &mut out;
    for step in parents {
        at = match step {
            Step::Key(k) => at.get_mut(k)?,
            Step::Index(i) => at.get_mut(*i)?,
        };
    }
    let Step::Key(key) = last else {
        return None;
    };
    let object = at.as_object_mut()?;
    match kind {
        ConfigMutation::Drop => {
            object.remove(key);
        }
        ConfigMutation::Retype => {
            let old = object.get(key).cloned().unwrap_or(Value::Null);
            object.insert(key.clone(), retyped(rng, &old));
        }
        ConfigMutation::Duplicate => {
            // The member again, last in its object: JSON text with the key twice.
            let old = object.get(key).cloned().unwrap_or(Value::Null);
            let marker = "\u{1}fuzz-duplicate\u{1}";
            object.insert(marker.into(), Value::Null);
            let value = if rng.chance(50) {
                retyped(rng, &old)
            } else {
                old
            };
            let twice = format!(
                "{}:{}",
                Value::String(key.clone()),
                serde_json::to_string(&value).ok()?
            );
            let text = out
                .to_string()
                .replace(&format!("{}:null", Value::String(marker.into())), &twice);
            return Some((Value::String(text), kind));
        }
    }
    Some((out, kind))
}

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// The paths of every object member in `v`.
fn members(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                at.push(Step::Key(k.clone()));
                out.push(at.clone());
                members(child, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                at.push(Step::Index(i));
                members(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

/// A value of another type than `old` (a string's text as a number, a list of it, ...).
fn retyped(rng: &mut Rng, old: &Value) -> Value {
    let candidates = [
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1e300),
        json!(""),
        json!("1"),
        json!([]),
        json!({}),
        json!([old]),
    ];
    let kind = |v: &Value| std::mem::discriminant(v);
    let others: Vec<&Value> = candidates.iter().filter(|c| kind(c) != kind(old)).collect();
    rng.pick(&others).map_or(Value::Null, |v| (*v).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(v: &Value) -> usize {
        let mut paths = Vec::new();
        members(v, &mut Vec::new(), &mut paths);
        paths.len()
    }

    #[test]
    fn configurations_are_dropped_duplicated_and_retyped() {
        let base = json!({"providers": {"a": {"issuer": "https://i", "audiences": ["x"]}},
                          "rules": [{"match": {"prefix": "/"}, "requires": "a"}]});
        let mut seen = Vec::new();
        for n in 0..200 {
            let mut rng = Rng::new(7, n);
            let (out, kind) = config(&mut rng, &base).unwrap();
            match kind {
                ConfigMutation::Drop => assert!(leaves(&out) < leaves(&base), "{out}"),
                ConfigMutation::Retype => {
                    assert_ne!(out, base);
                }
                ConfigMutation::Duplicate => {
                    let text = out.as_str().unwrap();
                    let keys = ["\"providers\":", "\"a\":", "\"issuer\":", "\"audiences\":"];
                    let twice = keys
                        .iter()
                        .chain(&["\"rules\":", "\"match\":"])
                        .any(|k| text.matches(k).count() == 2)
                        || text.matches("\"prefix\":").count() == 2
                        || text.matches("\"requires\":").count() == 2;
                    assert!(twice, "{text}");
                }
            }
            seen.push(kind);
        }
        for kind in [
            ConfigMutation::Drop,
            ConfigMutation::Duplicate,
            ConfigMutation::Retype,
        ] {
            assert!(seen.contains(&kind), "{kind:?} never made");
        }
        // Keys the runner fills in stay JSON: no duplicate then.
        let keyed = json!({"providers": {"a": {"jwks": {"$jwks": ["k"]}}}});
        for n in 0..100 {
            let (out, kind) = config(&mut Rng::new(7, n), &keyed).unwrap();
            assert_ne!(kind, ConfigMutation::Duplicate);
            assert!(out.is_object());
        }
        assert!(config(&mut Rng::new(1, 1), &json!([1, 2])).is_none());
    }
}
