//! How common stacks read names: of query parameters, cookies and form fields (`names`),
//! so that the filter counts every spelling one of them reads as a token source's name
//! (`access%5Ftoken`, `ACCESS_TOKEN`, `access.token`, `access_token[]`), and of headers
//! (`same_upstream_name`: `X_User_Id` is `x-user-id` to CGI, WSGI, Rack and PHP). Pure
//! functions, used by token extraction, the form body reader, the rules' method overrides
//! and the identity headers.
use crate::http::path::hex_value;

/// Percent-decodes one form or query component, `+` meaning a space; a `%` without two hex
/// digits stays as it is, as WHATWG's form parser keeps it. The one decoder of names and
/// values of forms and queries (`fold`, the form body, the `_method` parameter).
pub fn form_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let escaped = match (b, raw.get(i + 1..i + 3)) {
            (b'%', Some([hi, lo])) => hex_value(*hi).zip(hex_value(*lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(value) => {
                out.push(value);
                i += 3;
            }
            None => {
                out.push(if b == b'+' { b' ' } else { b });
                i += 1;
            }
        }
    }
    out
}

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
    let mut decoded = form_decode(raw.as_bytes());
    if let Some(nul) = decoded.iter().position(|b| *b == 0) {
        decoded.truncate(nul);
    }
    let start = decoded.iter().take_while(|b| **b == b' ').count();
    let mut out = Vec::with_capacity(decoded.len());
    let tail = decoded.get(start..).unwrap_or_default();
    let mut bracket_seen = false;
    for (j, &b) in tail.iter().enumerate() {
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

/// A header name's byte as some upstream reads it: ASCII letters without case, and every
/// other ASCII byte (`-`, `_`, `.`, ...) as `-`. CGI and WSGI servers, Rack and PHP turn
/// `X-User-Id` and `X_User_Id` into one variable `HTTP_X_USER_ID`; Apache 2.2 and PHP's
/// variable names also turn `.` (and every other symbol) into `_`. Bytes above ASCII are
/// left as they are (no stack folds them, and no identity header has them).
pub fn upstream_name_byte(b: u8) -> u8 {
    if b.is_ascii_alphanumeric() || !b.is_ascii() {
        b.to_ascii_lowercase()
    } else {
        b'-'
    }
}

/// A header name's length as one bit of a set of lengths (bit 63: 63 bytes or more), so
/// that a name none of a few headers can be is passed over with one test.
pub const fn length_bit(len: usize) -> u64 {
    1 << if len < 63 { len } else { 63 }
}

/// Whether two header names are one name to some upstream (`upstream_name_byte`). A
/// pseudo-header (`:path`) is only ever itself.
pub fn same_upstream_name(a: &str, b: &str) -> bool {
    if a.starts_with(':') || b.starts_with(':') {
        return a == b;
    }
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| upstream_name_byte(x) == upstream_name_byte(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_fold_but_pseudo_headers_are_only_themselves() {
        assert!(same_upstream_name("x-user-id", "X_User.Id"));
        assert!(!same_upstream_name("x-user-id", "x-user-ids"));
        assert!(same_upstream_name(":path", ":path"));
        for (a, b) in [(":path", "-path"), ("_path", ":path"), (":path", ":PATH")] {
            assert!(!same_upstream_name(a, b), "{a} {b}");
        }
    }

    #[test]
    fn form_components_decode_as_form_parsers_read_them() {
        assert_eq!(form_decode(b"a%5Fb+c%zz%4"), b"a_b c%zz%4");
        assert_eq!(fold("+ACCESS%2etoken[x]"), b"access_token");
        assert_eq!(fold("access[token"), b"access_token");
    }
}
