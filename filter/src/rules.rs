//! Route rules: which requirement applies to a request. The first matching rule wins.
//!
//! Paths are matched after normalisation, the way the upstream will resolve them, so that
//! `/api/public/../private` or `/api//private` cannot slip past a rule for `/api/private`.

use crate::authz::Requirement;

#[derive(Debug, Clone)]
pub struct Rule {
    pub matcher: Matcher,
    /// `None` means a public route.
    pub requires: Option<Requirement>,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub path: PathMatch,
    /// Upper-case methods; empty means any method.
    pub methods: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    /// Matches the prefix itself and anything below it on a segment boundary is NOT
    /// required: like Envoy's `prefix`, `/api/public` also matches `/api/publicity`.
    Prefix(String),
}

/// Outcome of route matching.
pub enum RouteMatch<'a> {
    Rule(&'a Rule),
    /// No rule matched.
    Unmatched,
    /// The path cannot be normalised safely (e.g. it climbs above the root or encodes a
    /// separator); it is refused rather than guessed at.
    BadPath,
}

impl Matcher {
    fn matches(&self, method: &str, path: &str) -> bool {
        let path_ok = match &self.path {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        };
        path_ok && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }
}

/// Finds the first rule matching `method` and the raw `:path` (query included).
pub fn find<'a>(rules: &'a [Rule], method: &str, raw_path: &str) -> RouteMatch<'a> {
    let Some(path) = normalize(raw_path) else {
        return RouteMatch::BadPath;
    };
    match rules.iter().find(|r| r.matcher.matches(method, &path)) {
        Some(rule) => RouteMatch::Rule(rule),
        None => RouteMatch::Unmatched,
    }
}

/// Normalises a request path: drops the query and fragment, decodes percent-encoded
/// unreserved characters, collapses repeated slashes and resolves `.` and `..` segments.
/// Returns `None` for paths that do not start with `/`, climb above the root, or contain
/// encoded `/`, `\`, `%`, NUL or control characters: those are ambiguous between proxy and
/// upstream and are refused.
pub fn normalize(raw: &str) -> Option<String> {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return None;
    }
    let decoded = decode_unreserved(path)?;
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            s => segments.push(s),
        }
    }
    let trailing = decoded.len() > 1
        && (decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/.."));
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Some(out)
}

/// Decodes `%XX` escapes of unreserved characters (RFC 3986: ALPHA DIGIT - . _ ~); keeps
/// other escapes as they are (upper-cased); refuses escapes of separators and controls,
/// malformed escapes, and raw control characters.
fn decode_unreserved(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_control() || b == b'\\' {
            return None;
        }
        if b != b'%' {
            // Multi-byte UTF-8 passes through unchanged, one byte at a time.
            let len = utf8_len(b);
            out.push_str(path.get(i..i + len)?);
            i += len;
            continue;
        }
        let hex = path.get(i + 1..i + 3)?;
        let value = u8::from_str_radix(hex, 16).ok()?;
        if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
            out.push(value as char);
        } else if value.is_ascii_control() || matches!(value, b'/' | b'\\' | b'%') {
            return None;
        } else {
            out.push('%');
            out.push_str(&hex.to_ascii_uppercase());
        }
        i += 3;
    }
    Some(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_dot_segments_slashes_and_unreserved_escapes() {
        let cases = [
            ("/api/private", "/api/private"),
            ("/api/public/../private", "/api/private"),
            ("/api//private", "/api/private"),
            ("/api/./private?x=1", "/api/private"),
            ("/api/%70rivate", "/api/private"),
            ("/api/%2e%2e/api/private", "/api/private"),
            ("/api/private/", "/api/private/"),
            ("/", "/"),
            ("/a/b/..", "/a/"),
            ("/a%20b", "/a%20b"),
            ("/a%3ab", "/a%3Ab"),
            ("/api/private#frag", "/api/private"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw).as_deref(), Some(want), "{raw}");
        }
    }

    #[test]
    fn refuses_ambiguous_paths() {
        for raw in [
            "api/private",
            "/..",
            "/a/../..",
            "/api%2fprivate",
            "/api%5cprivate",
            "/api\\private",
            "/api%00",
            "/api%",
            "/api%zz",
            "/a%25",
            "",
        ] {
            assert_eq!(normalize(raw), None, "{raw}");
        }
    }

    #[test]
    fn first_matching_rule_wins_and_methods_filter() {
        let rule = |path: PathMatch, methods: &[&str]| Rule {
            matcher: Matcher {
                path,
                methods: methods.iter().map(|m| m.to_string()).collect(),
            },
            requires: None,
        };
        let rules = vec![
            rule(PathMatch::Exact("/api/private-scoped".into()), &["GET"]),
            rule(PathMatch::Prefix("/api/public".into()), &[]),
            rule(PathMatch::Prefix("/".into()), &["POST"]),
        ];
        let index = |m: &str, p: &str| match find(&rules, m, p) {
            RouteMatch::Rule(r) => rules.iter().position(|x| std::ptr::eq(x, r)),
            RouteMatch::Unmatched => None,
            RouteMatch::BadPath => Some(99),
        };
        assert_eq!(index("GET", "/api/private-scoped"), Some(0));
        assert_eq!(index("POST", "/api/private-scoped"), Some(2));
        assert_eq!(index("DELETE", "/api/private-scoped"), None);
        assert_eq!(index("GET", "/api/public/x"), Some(1));
        assert_eq!(index("GET", "/api/public/../private-scoped"), Some(0));
        assert_eq!(index("GET", "/../x"), Some(99));
    }
}
