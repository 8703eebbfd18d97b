//! Matching actual values against expectations. A matcher is a JSON value: scalars compare
//! equal (numbers by value), objects match as subsets, arrays element by element, `null` means
//! absent, and these operator objects test instead: `{"$contains": "text"}`,
//! `{"$not_contains": "text"}`, `{"$present": true}`, `{"$gte": n}`, `{"$lte": n}`,
//! `{"$any": [matchers]}`, `{"$bytes": "<base64>"}` (exactly these bytes), `{"$regex": "re"}`
//! (the `regex` crate's syntax, linear time; it searches the value, unanchored like
//! `$contains`: write `^...$` to match the whole value). Actual values that are not UTF-8 show
//! as `{"$bytes": ...}`; `$contains` and `$regex` read them as lossy text, and read other
//! JSON values (numbers, objects) as their JSON text.

use serde_json::Value;

use super::bytes::unescape;

/// The bytes of an actual string or `{"$bytes": ...}` value.
fn actual_bytes(actual: &Value) -> Option<Vec<u8>> {
    match actual {
        Value::String(s) => Some(s.clone().into_bytes()),
        other => unescape(other)?.ok(),
    }
}

/// `Ok` when `actual` satisfies `expected`; else "expected X, actual Y" (with the JSON path).
pub fn check(expected: &Value, actual: Option<&Value>, path: &str) -> Result<(), String> {
    let fail = || {
        Err(format!(
            "{path}: expected {}, actual {}",
            compact(expected),
            actual.map(compact).unwrap_or_else(|| "absent".into())
        ))
    };
    match expected {
        Value::Null => match actual {
            None | Some(Value::Null) => Ok(()),
            _ => fail(),
        },
        Value::Object(ops) if ops.len() == 1 && ops.keys().all(|k| k.starts_with('$')) => {
            let (op, arg) = ops
                .iter()
                .next()
                .map(|(k, v)| (k.as_str(), v))
                .unwrap_or(("", &Value::Null));
            let text = actual.map(|a| match actual_bytes(a) {
                Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                None => a.to_string(),
            });
            let num = actual.and_then(Value::as_f64);
            let ok = match op {
                "$contains" => text.is_some_and(|t| t.contains(arg.as_str().unwrap_or(""))),
                "$not_contains" => !text.is_some_and(|t| t.contains(arg.as_str().unwrap_or(""))),
                "$present" => actual.is_some_and(|a| !a.is_null()) == arg.as_bool().unwrap_or(true),
                "$gte" => num.zip(arg.as_f64()).is_some_and(|(a, b)| a >= b),
                "$lte" => num.zip(arg.as_f64()).is_some_and(|(a, b)| a <= b),
                "$any" => arg
                    .as_array()
                    .is_some_and(|all| all.iter().any(|m| check(m, actual, path).is_ok())),
                "$regex" => {
                    let pattern = arg
                        .as_str()
                        .ok_or_else(|| format!("{path}: $regex takes a string"))?;
                    let re = regex(pattern).map_err(|e| format!("{path}: $regex: {e}"))?;
                    text.is_some_and(|t| re.is_match(&t))
                }
                "$bytes" => {
                    let wanted = unescape(expected)
                        .unwrap_or(Err(String::new()))
                        .map_err(|e| format!("{path}: {e}"))?;
                    actual.and_then(actual_bytes) == Some(wanted)
                }
                _ => return Err(format!("{path}: unknown matcher {op}")),
            };
            if ok { Ok(()) } else { fail() }
        }
        Value::Object(fields) => {
            let Some(Value::Object(actual)) = actual else {
                return fail();
            };
            fields
                .iter()
                .try_for_each(|(k, m)| check(m, actual.get(k), &format!("{path}.{k}")))
        }
        Value::Array(items) => {
            let Some(Value::Array(actual)) = actual else {
                return fail();
            };
            if items.len() != actual.len() {
                return fail();
            }
            items
                .iter()
                .zip(actual)
                .enumerate()
                .try_for_each(|(i, (m, a))| check(m, Some(a), &format!("{path}[{i}]")))
        }
        Value::Number(n) => match actual.and_then(Value::as_f64) {
            Some(a) if n.as_f64() == Some(a) => Ok(()),
            _ => fail(),
        },
        scalar => {
            if actual == Some(scalar) {
                Ok(())
            } else {
                fail()
            }
        }
    }
}

/// A compiled `$regex`, bounded in size (a scenario is trusted, but a typo should not build
/// a huge automaton).
pub fn regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    let clipped = clip(&s, 160);
    if clipped.len() < s.len() {
        format!("{clipped}…")
    } else {
        s
    }
}

/// The first `n` characters of `s`.
pub fn clip(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matchers() {
        let actual = json!({"error": "invalid_token", "n": 3, "list": [1, 2], "extra": true});
        assert!(
            check(
                &json!({"error": "invalid_token", "n": 3.0}),
                Some(&actual),
                "body"
            )
            .is_ok()
        );
        assert!(
            check(
                &json!({"error": {"$contains": "invalid"}}),
                Some(&actual),
                "body"
            )
            .is_ok()
        );
        assert!(
            check(
                &json!({"missing": null, "n": {"$gte": 3}}),
                Some(&actual),
                "body"
            )
            .is_ok()
        );
        assert!(check(&json!({"list": [1]}), Some(&actual), "body").is_err());
        let err = check(&json!({"error": "other"}), Some(&actual), "body").unwrap_err();
        assert_eq!(
            err,
            r#"body.error: expected "other", actual "invalid_token""#
        );
        assert!(check(&json!(null), None, "h").is_ok());
        assert!(check(&json!({"$present": true}), None, "h").is_err());
        assert!(check(&json!({"$any": [401, 403]}), Some(&json!(403)), "s").is_ok());
        assert!(check(&json!({"$bogus": 1}), Some(&json!(1)), "s").is_err());
    }

    #[test]
    fn regex_matcher_searches_unanchored_and_reports_bad_patterns() {
        let www = json!(r#"Bearer realm="api", error="invalid_token""#);
        let m = |re: &str| json!({"$regex": re});
        assert!(check(&m(r#"error="invalid_[a-z]+""#), Some(&www), "h").is_ok());
        assert!(check(&m("^Bearer "), Some(&www), "h").is_ok());
        assert!(check(&m("^realm"), Some(&www), "h").is_err());
        assert!(check(&m("^Bearer$"), Some(&www), "h").is_err());
        assert!(check(&m("x"), None, "h").is_err());
        // Numbers and objects are read as their JSON text; bytes as lossy text.
        assert!(check(&m("^40[13]$"), Some(&json!(403)), "n").is_ok());
        assert!(check(&m("^.x$"), Some(&json!({"$bytes": "/3g="})), "b").is_ok());
        let err = check(&m("("), Some(&www), "headers.x").unwrap_err();
        assert!(err.starts_with("headers.x: $regex: "), "{err}");
        let err = check(&json!({"$regex": 1}), Some(&www), "h").unwrap_err();
        assert_eq!(err, "h: $regex takes a string");
        let err = check(&m("nope"), Some(&www), "h").unwrap_err();
        assert!(
            err.starts_with(r#"h: expected {"$regex":"nope"}, actual"#),
            "{err}"
        );
    }

    #[test]
    fn bytes_matcher() {
        let raw = json!({"$bytes": "/3g="});
        assert!(check(&json!({"$bytes": "/3g="}), Some(&raw), "h").is_ok());
        assert!(check(&json!({"$bytes": "eA=="}), Some(&json!("x")), "h").is_ok());
        assert!(check(&json!({"$bytes": "eA=="}), Some(&raw), "h").is_err());
        assert!(check(&json!({"$bytes": "eA=="}), None, "h").is_err());
        assert!(check(&json!("x"), Some(&raw), "h").is_err());
        assert!(check(&json!({"$contains": "x"}), Some(&raw), "h").is_ok());
        let bad = check(&json!({"$bytes": "!"}), Some(&raw), "h").unwrap_err();
        assert!(bad.contains("base64"), "{bad}");
    }
}
