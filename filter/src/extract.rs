//! Token extraction: where a provider looks for its token, and RFC 6750's rule that a
//! request uses one transmission method only.

use crate::binding::Scheme;
use crate::request::{HeaderChanges, Request};

/// Where a token may be carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header whose value starts with `prefix` (compared case-insensitively, so
    /// `bearer` matches `Bearer `). An empty prefix takes the whole value.
    Header { name: String, prefix: String },
    /// A query parameter, e.g. `access_token`.
    Query(String),
    /// A cookie.
    Cookie(String),
    /// A field of a form-encoded request body (RFC 6750 section 2.2), e.g. `access_token`.
    Body(String),
}

impl TokenSource {
    /// `Authorization: Bearer <token>`, the default.
    pub fn bearer() -> Self {
        TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }
    }
}

/// The outcome of looking for a token.
#[derive(Debug, PartialEq, Eq)]
pub enum Extracted<'r> {
    /// No source carried a token.
    Missing,
    /// Exactly one token; `source` is the index into the provider's sources. Its
    /// characters are not checked yet (`is_b64token`): a token the token cache holds
    /// passed that check when it was verified, so only the others need it.
    Found {
        token: &'r str,
        source: usize,
        scheme: Scheme,
    },
    /// A malformed request (RFC 6750 `invalid_request`): the description says why.
    Invalid(&'static str),
    /// The token is longer than the configured bound; refused before any decoding.
    TooLarge,
}

/// Looks for a token in every source. More than one token, even identical ones, is an
/// `invalid_request`, as RFC 6750 section 2 requires. Where a source reads
/// `Authorization: Bearer`, it reads `Authorization: DPoP` too (RFC 9449 section 7.1).
pub fn extract<'r>(req: &'r Request, sources: &[TokenSource], max_bytes: usize) -> Extracted<'r> {
    let mut found: Option<(&'r str, usize, Scheme)> = None;
    for (index, source) in sources.iter().enumerate() {
        // Every token-shaped value the source finds; an empty one is an error.
        let mut take = |value: &'r str, scheme| {
            let token = value.trim_matches(' ');
            if token.is_empty() {
                return Err("Empty access token");
            }
            if found.is_some() {
                return Err("More than one method used for authentication");
            }
            found = Some((token, index, scheme));
            Ok(())
        };
        let taken = match source {
            TokenSource::Header { name, prefix } => {
                let dpop = is_bearer(name, prefix);
                req.header_values(name).try_for_each(|v| {
                    if let Some(token) = strip_prefix_ignore_case(v, prefix) {
                        take(token, Scheme::Bearer)
                    } else if let Some(token) =
                        strip_prefix_ignore_case(v, DPOP_PREFIX).filter(|_| dpop)
                    {
                        take(token, Scheme::Dpop)
                    } else {
                        Ok(())
                    }
                })
            }
            TokenSource::Query(param) => query_pairs(req.query().unwrap_or_default())
                .filter(|(k, _)| k == param)
                .try_for_each(|(_, v)| take(v, Scheme::Bearer)),
            TokenSource::Cookie(cookie) => req
                .header_values("cookie")
                .flat_map(cookie_pairs)
                .filter(|(k, _)| k == cookie)
                .try_for_each(|(_, v)| take(v, Scheme::Bearer)),
            TokenSource::Body(field) => req
                .form_values(field)
                .try_for_each(|v| take(v, Scheme::Bearer)),
        };
        if let Err(why) = taken {
            return Extracted::Invalid(why);
        }
    }
    match found {
        None => Extracted::Missing,
        Some((token, ..)) if token.len() > max_bytes => Extracted::TooLarge,
        Some((token, source, scheme)) => Extracted::Found {
            token,
            source,
            scheme,
        },
    }
}

/// `Authorization: Bearer <token>` (the prefix in any case).
fn is_bearer(name: &str, prefix: &str) -> bool {
    name == "authorization" && prefix.eq_ignore_ascii_case("Bearer ")
}

/// The DPoP authentication scheme with its space (RFC 9449 section 7.1).
pub const DPOP_PREFIX: &str = "DPoP ";

pub fn strip_prefix_ignore_case<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn cookie_pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The description of a token with characters outside RFC 6750's `b64token` (400).
pub const MALFORMED: &str = "Malformed access token";

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| B64TOKEN_CHARS[usize::from(b)])
}

/// Which bytes `b64token` allows before its `=` padding (a table: tokens are long).
const B64TOKEN_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// Whether `req` may carry a token in a form-encoded body (RFC 6750 section 2.2): a
/// method whose body has meaning (not `GET` or `HEAD`), `content-type`
/// `application/x-www-form-urlencoded` (parameters allowed), and no `content-encoding`
/// other than `identity` (a compressed body is not read).
pub fn may_carry_form_body(req: &Request) -> bool {
    const FORM: &str = "application/x-www-form-urlencoded";
    let form = req.header_values("content-type").next().is_some_and(|ct| {
        let media = ct.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case(FORM)
    });
    let plain = req
        .header_values("content-encoding")
        .all(|e| e.trim().eq_ignore_ascii_case("identity"));
    form && plain && !matches!(req.method(), "GET" | "HEAD")
}

/// The changes that take the token out of the request: the header is removed, a query
/// parameter is cut out of `:path`, a cookie is cut out of `cookie`, a form field out of
/// the body (and `content-length` follows).
pub fn removal(req: &Request, source: &TokenSource) -> HeaderChanges {
    let (remove, set) = match source {
        TokenSource::Body(field) => {
            let body = req.form_without(field);
            let mut set = Vec::new();
            if req.has_header("content-length") {
                set.push(("content-length".to_string(), body.len().to_string()));
            }
            return HeaderChanges {
                set,
                body: Some(body),
                ..HeaderChanges::default()
            };
        }
        TokenSource::Header { name, .. } => (vec![name.clone()], vec![]),
        TokenSource::Query(param) => {
            let (path, query) = req.path().split_once('?').unwrap_or((req.path(), ""));
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.is_empty() && p.split('=').next() != Some(param.as_str()))
                .collect();
            let new_path = if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            };
            (vec![], vec![(":path".into(), new_path)])
        }
        TokenSource::Cookie(cookie) => {
            let kept: Vec<&str> = req
                .header_values("cookie")
                .flat_map(|h| h.split(';').map(str::trim))
                .filter(|p| !p.is_empty() && p.split('=').next() != Some(cookie.as_str()))
                .collect();
            if kept.is_empty() {
                (vec!["cookie".into()], vec![])
            } else {
                (vec![], vec![("cookie".into(), kept.join("; "))])
            }
        }
    };
    HeaderChanges {
        remove,
        set,
        ..HeaderChanges::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64token_characters_are_rfc_6750s() {
        let allowed: Vec<u8> = (0..=255u8)
            .filter(|b| B64TOKEN_CHARS[usize::from(*b)])
            .collect();
        // In byte order: `+ - . /`, the digits, `A-Z`, `_`, `a-z`, `~`.
        let want: Vec<u8> = (b'+'..=b'9')
            .filter(|b| *b != b',')
            .chain(b'A'..=b'Z')
            .chain([b'_'])
            .chain(b'a'..=b'z')
            .chain([b'~'])
            .collect();
        assert_eq!(
            String::from_utf8(allowed).unwrap(),
            String::from_utf8(want).unwrap()
        );
    }

    const MAX: usize = 8192;

    fn all_sources() -> Vec<TokenSource> {
        vec![
            TokenSource::bearer(),
            TokenSource::Header {
                name: "x-token".into(),
                prefix: String::new(),
            },
            TokenSource::Query("access_token".into()),
            TokenSource::Cookie("at".into()),
            TokenSource::Body("access_token".into()),
        ]
    }

    fn form(method: &str, body: &str, headers: &[(&str, &str)]) -> Request {
        let mut req = Request::new(method, "/", headers);
        req.set_form_body(body.as_bytes());
        req
    }

    fn found<'r>(req: &'r Request, sources: &[TokenSource]) -> Extracted<'r> {
        extract(req, sources, MAX)
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer a.b.c",
            "bearer a.b.c",
            "BEARER a.b.c",
            "Bearer  a.b.c ",
        ] {
            let req = Request::new("GET", "/", &[("Authorization", value)]);
            assert_eq!(
                found(&req, &[TokenSource::bearer()]),
                Extracted::Found {
                    token: "a.b.c",
                    source: 0,
                    scheme: Scheme::Bearer,
                },
                "{value}"
            );
        }
    }

    #[test]
    fn other_schemes_are_not_tokens() {
        let req = Request::new("GET", "/", &[("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(found(&req, &[TokenSource::bearer()]), Extracted::Missing);
        let req = Request::new("GET", "/", &[("authorization", "Bearerabc")]);
        assert_eq!(found(&req, &[TokenSource::bearer()]), Extracted::Missing);
    }

    #[test]
    fn empty_bearer_is_invalid_request_and_bad_characters_are_not_b64token() {
        for value in ["Bearer ", "Bearer    "] {
            let req = Request::new("GET", "/", &[("authorization", value)]);
            assert_eq!(
                found(&req, &[TokenSource::bearer()]),
                Extracted::Invalid("Empty access token"),
                "{value}"
            );
        }
        for value in ["Bearer a b", "Bearer a.b,c", "Bearer ===", "Bearer a\"b"] {
            let req = Request::new("GET", "/", &[("authorization", value)]);
            assert_eq!(
                malformed(&req, &[TokenSource::bearer()]),
                Some(true),
                "{value}"
            );
        }
    }

    /// Whether the one token found is outside `b64token` (`None`: no single token).
    fn malformed(req: &Request, sources: &[TokenSource]) -> Option<bool> {
        match found(req, sources) {
            Extracted::Found { token, .. } => Some(!is_b64token(token)),
            _ => None,
        }
    }

    #[test]
    fn each_source_is_read() {
        let sources = all_sources();
        let cases = [
            Request::new("GET", "/", &[("authorization", "Bearer t1")]),
            Request::new("GET", "/", &[("x-token", "t1")]),
            Request::new("GET", "/x?a=1&access_token=t1", &[]),
            Request::new("GET", "/", &[("cookie", "a=1; at=t1")]),
            form("POST", "a=1&access_token=t1", &[]),
        ];
        for (i, req) in cases.iter().enumerate() {
            assert_eq!(
                found(req, &sources),
                Extracted::Found {
                    token: "t1",
                    source: i,
                    scheme: Scheme::Bearer,
                }
            );
        }
    }

    #[test]
    fn more_than_one_token_is_invalid_request() {
        let sources = all_sources();
        let cases = [
            Request::new("GET", "/?access_token=t", &[("authorization", "Bearer t")]),
            Request::new(
                "GET",
                "/",
                &[("authorization", "Bearer t"), ("authorization", "Bearer t")],
            ),
            Request::new("GET", "/?access_token=a&access_token=b", &[]),
            Request::new("GET", "/", &[("cookie", "at=a"), ("cookie", "at=b")]),
            Request::new("GET", "/", &[("x-token", "a"), ("cookie", "at=b")]),
            form("POST", "access_token=a", &[("authorization", "Bearer a")]),
            form("POST", "access_token=a&access_token=b", &[]),
        ];
        for req in &cases {
            assert_eq!(
                found(req, &sources),
                Extracted::Invalid("More than one method used for authentication"),
                "{req:?}"
            );
        }
    }

    #[test]
    fn only_configured_sources_count() {
        let req = Request::new("GET", "/?access_token=t", &[]);
        assert_eq!(found(&req, &[TokenSource::bearer()]), Extracted::Missing);
    }

    #[test]
    fn oversized_tokens_are_refused_before_decoding() {
        let big = format!("Bearer {}", "a".repeat(MAX + 1));
        let req = Request::new("GET", "/", &[("authorization", &big)]);
        assert_eq!(found(&req, &[TokenSource::bearer()]), Extracted::TooLarge);
        let ok = format!("Bearer {}", "a".repeat(MAX));
        let req = Request::new("GET", "/", &[("authorization", &ok)]);
        assert!(matches!(
            found(&req, &[TokenSource::bearer()]),
            Extracted::Found { .. }
        ));
    }

    #[test]
    fn removal_takes_the_token_out_of_its_source() {
        let req = Request::new(
            "GET",
            "/p?a=1&access_token=t&b=2",
            &[("cookie", "x=1; at=t; y=2")],
        );
        let sources = all_sources();
        let changes = |remove: &[&str], set: &[(&str, &str)], body: Option<&str>| HeaderChanges {
            remove: remove.iter().map(|s| s.to_string()).collect(),
            set: set
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            properties: vec![],
            body: body.map(str::to_string),
        };
        assert_eq!(
            removal(&req, &sources[0]),
            changes(&["authorization"], &[], None)
        );
        assert_eq!(
            removal(&req, &sources[2]),
            changes(&[], &[(":path", "/p?a=1&b=2")], None)
        );
        assert_eq!(
            removal(&req, &sources[3]),
            changes(&[], &[("cookie", "x=1; y=2")], None)
        );
        let only = Request::new("GET", "/p?access_token=t", &[("cookie", "at=t")]);
        assert_eq!(
            removal(&only, &sources[2]),
            changes(&[], &[(":path", "/p")], None)
        );
        assert_eq!(removal(&only, &sources[3]), changes(&["cookie"], &[], None));
        // The other fields stay as they came (still encoded); content-length follows.
        let posted = form(
            "POST",
            "a=%41+b&access_token=t&&c",
            &[("content-length", "25")],
        );
        assert_eq!(
            removal(&posted, &sources[4]),
            changes(&[], &[("content-length", "9")], Some("a=%41+b&c"))
        );
        let chunked = form("POST", "access_token=t", &[]);
        assert_eq!(removal(&chunked, &sources[4]), changes(&[], &[], Some("")));
    }

    #[test]
    fn form_fields_are_percent_decoded() {
        let req = form("POST", "access_token=a%2Eb+c&x=%zz&access%5Ftoken2=y", &[]);
        assert_eq!(
            req.form_values("access_token").collect::<Vec<_>>(),
            ["a.b c"]
        );
        assert_eq!(req.form_values("x").collect::<Vec<_>>(), ["%zz"]);
        assert_eq!(req.form_values("access_token2").collect::<Vec<_>>(), ["y"]);
        // A space from `+` makes the token malformed, as any character outside b64token.
        let body = [TokenSource::Body("access_token".into())];
        assert_eq!(malformed(&req, &body), Some(true));
        // Bytes that are not UTF-8 never vanish: the token is malformed.
        let mut bad = Request::new("POST", "/", &[]);
        bad.set_form_body(b"access_token=a%ffb");
        assert_eq!(malformed(&bad, &body), Some(true));
        let mut good = Request::new("POST", "/", &[]);
        good.set_form_body(b"access_token=a.b_c-d%7E");
        assert_eq!(malformed(&good, &body), Some(false));
    }

    #[test]
    fn only_form_posts_may_carry_a_body_token() {
        let form_ct = (
            "content-type",
            "Application/X-WWW-Form-Urlencoded; charset=utf-8",
        );
        assert!(may_carry_form_body(&Request::new("POST", "/", &[form_ct])));
        assert!(may_carry_form_body(&Request::new(
            "PUT",
            "/",
            &[form_ct, ("content-encoding", "identity")]
        )));
        for req in [
            Request::new("GET", "/", &[form_ct]),
            Request::new("HEAD", "/", &[form_ct]),
            Request::new("POST", "/", &[("content-type", "application/json")]),
            Request::new("POST", "/", &[]),
            Request::new("POST", "/", &[form_ct, ("content-encoding", "gzip")]),
        ] {
            assert!(!may_carry_form_body(&req), "{req:?}");
        }
    }
}
