//! How common stacks read the names of query parameters, cookies and form fields, so that
//! the filter counts every spelling one of them reads as a token source's name
//! (`access%5Ftoken`, `ACCESS_TOKEN`, `access.token`, `access_token[]`). Pure functions;
//! used by the extraction of tokens (`extract`) and the form body reader (`request`).
use crate::path::hex_value;

/// Whether a raw parameter, cookie or field name reads as `wanted` in some common stack:
/// the two are equal after `fold`. Plain names (the usual case) are compared as they are.
pub fn names(raw: &str, wanted: &str) -> bool {
    if raw.eq_ignore_ascii_case(wanted) {
        return true;
    }
    let plain = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if plain(raw) && plain(wanted) {
        return false;
    }
    fold(raw) == fold(wanted)
}

/// A name as the most permissive of the common parsers reads it: percent-decoded with `+`
/// as a space (qs, Go, Python, servlets, PHP), cut at a NUL (C parsers), leading spaces
/// dropped and `.`, ` ` and an unclosed `[` turned into `_` (PHP), cut before a bracket
/// suffix `[...]` (qs, Rack, PHP arrays and hashes), and in lower case (nginx's `$arg_`).
pub fn fold(raw: &str) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                Some(hi << 4 | lo)
            })
            .flatten();
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(if b == b'+' { b' ' } else { b });
                i += 1;
            }
        }
    }
    if let Some(nul) = decoded.iter().position(|b| *b == 0) {
        decoded.truncate(nul);
    }
    let start = decoded.iter().take_while(|b| **b == b' ').count();
    let mut out = Vec::with_capacity(decoded.len());
    let rest = decoded.get(start..).unwrap_or_default().iter().enumerate();
    let tail = decoded.get(start..).unwrap_or_default();
    let mut bracket_seen = false;
    for (j, &b) in rest {
        match b {
            b'[' if !bracket_seen => {
                let closed = tail.get(j + 1..).is_some_and(|t| t.contains(&b']'));
                if closed {
                    break;
                }
                bracket_seen = true;
                out.push(b'_');
            }
            b'.' | b' ' => out.push(b'_'),
            b => out.push(b.to_ascii_lowercase()),
        }
    }
    out
}
