//! Token extraction: where a provider looks for its token, and RFC 6750's rule that a
//! request uses one transmission method only.
//!
//! The filter must find every token the upstream behind it could read, or an upstream
//! could act on a token nobody verified (on an `allow_missing` route, or next to a
//! verified one). So each source is read the widest way a common stack reads it:
//! - query, cookie and form field **names** match after `fold`: percent-decoding (`+` is a
//!   space), ASCII case (nginx's `$arg_` is case-insensitive), PHP's mangling of `.`, ` `
//!   and an unclosed `[` into `_`, and bracket suffixes (`access_token[]`, `access_token[x]`
//!   of qs, Rack and PHP);
//! - query pairs split on `&` and `;` (Rack and Python before 3.10 split on both), cookies
//!   on `;` and `,` (Rack and RFC 2109 parsers); a token in a piece that the two splits
//!   read differently is ambiguous, and refused;
//! - **values** are taken raw: a value that decoding would change (`%`, a quote, `+`) is
//!   not a `b64token` or not base64url, so it is refused (400 or 401), never read two ways;
//! - a scheme header (`Authorization: Bearer`) is a singleton: its scheme is followed by
//!   any run of spaces and tabs; the scheme alone is an empty credential (400); the scheme
//!   run into other characters (`Bearerx`, `Bearer,x`) is a 400; another scheme (`Basic`)
//!   is no token here, and the authenticator strips it before the request goes upstream
//!   on a route that reads the header (`is_other_scheme`).

use crate::http::request::{HeaderChanges, Request};
use crate::http::spelling::names;
use crate::policy::response::{Failure, invalid_token};

/// How the token was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: DPoP <token>`.
    Dpop,
    /// Any other source: `Bearer`, a query parameter, a cookie, another header.
    Bearer,
}

/// Where a token may be carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header whose value starts with `prefix` (compared case-insensitively, so
    /// `bearer` matches `Bearer `). An empty prefix takes the whole value. A prefix that
    /// ends with a space names an authentication scheme (`scheme`): it is followed by any
    /// run of spaces and tabs.
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

    /// Whether the source reads `Authorization: DPoP` beside its `Bearer` (RFC 9449
    /// section 7.1): only `Authorization: Bearer` does.
    pub fn reads_dpop(&self) -> bool {
        matches!(self, TokenSource::Header { name, prefix }
            if name == "authorization" && prefix.eq_ignore_ascii_case("Bearer "))
    }

    /// The authentication scheme of a header source whose prefix is one (`Bearer ` gives
    /// `Bearer`), with its header name.
    pub fn scheme(&self) -> Option<(&str, &str)> {
        match self {
            TokenSource::Header { name, prefix } if prefix.ends_with(' ') => {
                let scheme = prefix.trim_end_matches(' ');
                (!scheme.is_empty()).then_some((name.as_str(), scheme))
            }
            _ => None,
        }
    }
}

/// The one token a request carries for a provider; `source` is the index into the
/// provider's sources. Its characters are not checked yet (`is_b64token`): a token the
/// token cache holds passed that check when it was verified, so only the others need it.
#[derive(Debug, PartialEq, Eq)]
pub struct Found<'r> {
    pub token: &'r str,
    pub source: usize,
    pub scheme: Scheme,
    /// The header it came in, as spelled (`None`: not a header source). Exactly one
    /// instance of a header source's header carries a token: the one to remove.
    pub header: Option<&'r str>,
}

/// The description of a token longer than the configured bound (refused before any
/// decoding).
pub const TOO_LARGE: &str = "Token too large";

/// The descriptions of malformed requests (400 `invalid_request`).
pub const MORE_THAN_ONE: &str = "More than one method used for authentication";
pub const EMPTY: &str = "Empty access token";
pub const MALFORMED_SCHEME: &str = "Malformed authorization scheme";
pub const AMBIGUOUS: &str = "Ambiguous access token parameter";

/// Looks for a token in every source: `None` when no source carries one. More than one
/// token, even identical ones, is an `invalid_request`, as RFC 6750 section 2 requires; so
/// is any other malformed request (the description says why). A source that reads form
/// bodies refuses a compressed one: a token may be inside, and the filter does not
/// inflate bodies. A header source reads its header
/// under every spelling an upstream folds into its name (`x_api_token` for `x-api-token`).
/// Where a source reads `Authorization: Bearer`, it reads `Authorization: DPoP` too (RFC 9449
/// section 7.1).
pub fn extract<'r>(
    req: &'r Request,
    sources: &[TokenSource],
    max_bytes: usize,
) -> Result<Option<Found<'r>>, Failure> {
    let mut found: Option<Found<'r>> = None;
    for (index, source) in sources.iter().enumerate() {
        // Every token-shaped value the source finds; an empty one is an error.
        let mut take = |value: &'r str, scheme, header| {
            let token = value.trim_matches(WSP);
            if token.is_empty() {
                return Err(EMPTY);
            }
            if found.is_some() {
                return Err(MORE_THAN_ONE);
            }
            found = Some(Found {
                token,
                source: index,
                scheme,
                header,
            });
            Ok(())
        };
        let taken = match source {
            TokenSource::Header { name, prefix } => match source.scheme() {
                Some((_, scheme)) => {
                    scheme_header(req, name, scheme, source.reads_dpop(), &mut take)
                }
                None => req.header_spellings(name).try_for_each(|(spelling, v)| {
                    match strip_prefix_ignore_case(v.trim_start_matches(WSP), prefix) {
                        Some(token) => take(token, Scheme::Bearer, Some(spelling)),
                        None => Ok(()),
                    }
                }),
            },
            TokenSource::Query(param) => query_tokens(req.query().unwrap_or_default(), param)
                .try_for_each(|piece| take(piece?, Scheme::Bearer, None)),
            TokenSource::Cookie(cookie) => req
                .header_values("cookie")
                .flat_map(|h| cookie_tokens(h, cookie))
                .try_for_each(|piece| take(piece?, Scheme::Bearer, None)),
            TokenSource::Body(_) if has_form_body(req) && is_encoded(req) => {
                return Err(Failure::EncodedBody);
            }
            TokenSource::Body(field) => req
                .form_values(field)
                .try_for_each(|v| take(v, Scheme::Bearer, None)),
        };
        if let Err(why) = taken {
            return Err(Failure::InvalidRequest(why.to_string()));
        }
    }
    match found {
        Some(Found { token, .. }) if token.len() > max_bytes => Err(invalid_token(TOO_LARGE)),
        found => Ok(found),
    }
}

/// A scheme header (`Authorization`) read into `take`. It is a singleton (RFC 9110 section
/// 11.6.2): stacks that keep the first instance and those that keep the last would
/// disagree, so two are refused. Envoy joins repeated instances with `,` into one value,
/// so a credential of ours after a comma in another scheme's value is a second instance
/// too (after our own scheme, a comma is in the token, which is then not a b64token: 400).
fn scheme_header<'r>(
    req: &'r Request,
    name: &str,
    scheme: &str,
    dpop: bool,
    take: &mut impl FnMut(&'r str, Scheme, Option<&'r str>) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    let mut instances = req.header_spellings(name);
    let Some((spelling, value)) = instances.next() else {
        return Ok(());
    };
    if instances.next().is_some() {
        return Err(MORE_THAN_ONE);
    }
    let joined = || {
        value
            .split(',')
            .skip(1)
            .any(|p| read_scheme(p, scheme, dpop) != SchemeValue::Other)
    };
    match read_scheme(value, scheme, dpop) {
        SchemeValue::Token(token, scheme) => take(token, scheme, Some(spelling)),
        _ if joined() => Err(MORE_THAN_ONE),
        SchemeValue::Other => Ok(()),
        SchemeValue::Malformed => Err(MALFORMED_SCHEME),
    }
}

/// Whitespace around credentials: spaces and tabs (RFC 9110's OWS).
const WSP: [char; 2] = [' ', '\t'];

/// The DPoP authentication scheme (RFC 9449 section 7.1).
const DPOP_SCHEME: &str = "DPoP";

/// How a value of a scheme header reads.
#[derive(Debug, PartialEq, Eq)]
enum SchemeValue<'v> {
    /// The scheme the source reads (or DPoP next to Bearer), and what follows it.
    Token(&'v str, Scheme),
    /// Another scheme (`Basic ...`): not a token of this source.
    Other,
    /// The scheme run into other characters (`Bearerx`, `Bearer,x`): stacks that take
    /// what follows a prefix would read a token here, so it is refused.
    Malformed,
}

/// Reads `value` as `scheme` followed by spaces or tabs and the credentials (RFC 9110
/// section 11.4: `auth-scheme [ 1*SP token68 ]`, tabs allowed as parsers that split on any
/// whitespace read them). The scheme alone is an empty credential.
fn read_scheme<'v>(value: &'v str, scheme: &str, dpop: bool) -> SchemeValue<'v> {
    let value = value.trim_start_matches(WSP);
    let (head, rest) = value
        .bytes()
        .position(|b| b == b' ' || b == b'\t')
        .and_then(|i| Some((value.get(..i)?, value.get(i..)?)))
        .unwrap_or((value, ""));
    if head.eq_ignore_ascii_case(scheme) {
        return SchemeValue::Token(rest, Scheme::Bearer);
    }
    if dpop && head.eq_ignore_ascii_case(DPOP_SCHEME) {
        return SchemeValue::Token(rest, Scheme::Dpop);
    }
    let starts = |name: &str| {
        head.get(..name.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(name))
    };
    if starts(scheme) || (dpop && starts(DPOP_SCHEME)) {
        SchemeValue::Malformed
    } else {
        SchemeValue::Other
    }
}

/// Whether an `Authorization` value uses the DPoP scheme, read as a source of
/// `Authorization: Bearer` reads it (`DPoP` and any spaces or tabs).
pub fn is_dpop_scheme(value: &str) -> bool {
    matches!(
        read_scheme(value, "Bearer", true),
        SchemeValue::Token(_, Scheme::Dpop)
    )
}

fn strip_prefix_ignore_case<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| value.get(prefix.len()..))
        .flatten()
}

/// Whether `value` (a header value) would be stripped as another scheme: a value of a
/// scheme header that `schemes` (the schemes read on that header) do not read.
pub fn is_other_scheme(value: &str, schemes: &[&str], dpop: bool) -> bool {
    schemes
        .iter()
        .all(|s| read_scheme(value, s, dpop) == SchemeValue::Other)
}

/// The values of the query pairs whose name reads as `param`. Pairs split on `&` and, as
/// some stacks read them, on `;`: a pair that only the `;` split finds, or that it reads
/// with another value, is ambiguous.
fn query_tokens<'q>(
    query: &'q str,
    param: &str,
) -> impl Iterator<Item = Result<&'q str, &'static str>> {
    split_tokens(query, '&', ';', param)
}

/// The values of the cookies whose name reads as `cookie` in one `Cookie` header: split
/// on `;` and, as Rack and RFC 2109 parsers read them, on `,`.
fn cookie_tokens<'c>(
    header: &'c str,
    cookie: &str,
) -> impl Iterator<Item = Result<&'c str, &'static str>> {
    split_tokens(header, ';', ',', cookie)
}

/// The values of the `name=value` pairs of `text` (split on `outer`) whose name reads as
/// `wanted`. A piece that splits again on `inner` and holds a pair naming `wanted` is
/// ambiguous (stacks read different values, or a pair the others do not see).
fn split_tokens<'t>(
    text: &'t str,
    outer: char,
    inner: char,
    wanted: &str,
) -> impl Iterator<Item = Result<&'t str, &'static str>> {
    text.split(outer).filter_map(move |piece| {
        if piece.contains(inner) {
            let named = piece.split(inner).any(|p| names(pair(p).0, wanted));
            return named.then_some(Err(AMBIGUOUS));
        }
        let (name, value) = pair(piece);
        names(name, wanted).then_some(Ok(value))
    })
}

/// One `name=value` (or `name`), with whitespace around the name dropped as cookie
/// parsers do.
fn pair(piece: &str) -> (&str, &str) {
    let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
    (name.trim_matches(WSP), value.trim_matches(WSP))
}

/// Whether `req` carries a form-encoded body (RFC 6750 section 2.2) that a stack could
/// read a token from: a method whose body has meaning (not `GET` or `HEAD`) and a
/// `content-type` of `application/x-www-form-urlencoded` (parameters allowed; any of
/// several values).
pub fn has_form_body(req: &Request) -> bool {
    const FORM: &str = "application/x-www-form-urlencoded";
    let form = req.header_values("content-type").any(|ct| {
        let media = ct.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case(FORM)
    });
    form && !matches!(req.method(), "GET" | "HEAD")
}

/// Whether the request body is encoded (`content-encoding` other than `identity`): the
/// filter does not inflate bodies, so a form body it would have to read is refused (415).
pub fn is_encoded(req: &Request) -> bool {
    req.header_values("content-encoding")
        .any(|e| !e.trim().eq_ignore_ascii_case("identity"))
}

/// Whether `req` may carry a token in a form body the filter reads: a form body
/// (`has_form_body`) that is not encoded (an encoded one is refused instead).
pub fn may_carry_form_body(req: &Request) -> bool {
    has_form_body(req) && !is_encoded(req)
}

/// The description of a token with characters outside RFC 6750's `b64token` (400).
pub const MALFORMED: &str = "Malformed access token";

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| B64TOKEN_CHARS.get(usize::from(b)) == Some(&true))
}

/// Which bytes `b64token` allows before its `=` padding (a table: tokens are long).
#[expect(
    clippy::indexing_slicing,
    reason = "evaluated at compile time, with b below 256: an index out of bounds fails the build"
)]
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

/// The changes that take the token out of the request: the header is removed, a query
/// parameter is cut out of `:path`, a cookie is cut out of `cookie`, a form field out of
/// the body (and `content-length` follows).
/// `header`: the header the token came in, as `Found` names it.
pub fn removal(req: &Request, source: &TokenSource, header: Option<&str>) -> HeaderChanges {
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
        TokenSource::Header { name, .. } => (vec![header.unwrap_or(name).to_string()], vec![]),
        TokenSource::Query(param) => {
            let (path, query) = req.path().split_once('?').unwrap_or((req.path(), ""));
            let kept = without(query, '&', param);
            let new_path = if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{kept}")
            };
            (vec![], vec![(":path".into(), new_path)])
        }
        TokenSource::Cookie(cookie) => {
            let kept: Vec<String> = req
                .header_values("cookie")
                .map(|h| without(h, ';', cookie))
                .filter(|h| !h.is_empty())
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

/// `text` (pairs split on `outer`) without the pairs whose name reads as `wanted`; the
/// other pairs as they came, empty ones dropped. (A piece that also splits another way
/// and names `wanted` never gets here: extraction refuses it as ambiguous.)
fn without(text: &str, outer: char, wanted: &str) -> String {
    let sep = if outer == ';' { "; " } else { "&" };
    text.split(outer)
        .map(|p| p.trim_matches(WSP))
        .filter(|p| !p.is_empty() && !names(pair(p).0, wanted))
        .collect::<Vec<_>>()
        .join(sep)
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

    fn found<'r>(req: &'r Request, sources: &[TokenSource]) -> Result<Option<Found<'r>>, Failure> {
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
                Ok(Some(Found {
                    token: "a.b.c",
                    source: 0,
                    scheme: Scheme::Bearer,
                    header: Some("authorization"),
                })),
                "{value}"
            );
        }
    }

    #[test]
    fn other_schemes_are_not_tokens() {
        for value in [
            "Basic dXNlcjpwYXNz",
            "Negotiate abc",
            "JWT a.b.c",
            "Token a.b.c",
        ] {
            let req = Request::new("GET", "/", &[("authorization", value)]);
            assert_eq!(found(&req, &[TokenSource::bearer()]), Ok(None), "{value}");
            assert!(is_other_scheme(value, &["Bearer"], true), "{value}");
        }
        assert!(!is_other_scheme("Bearer x", &["Bearer"], true));
        assert!(!is_other_scheme("DPoP x", &["Bearer"], true));
        assert!(is_other_scheme("DPoP x", &["Bearer"], false));
        assert!(!is_other_scheme("Token x", &["Bearer", "Token"], false));
        // Run into other characters, the scheme is read by stacks that take what follows
        // a prefix (`substring(7)`, `replace(/^Bearer\s*/i, '')`): refused, never "none".
        for value in [
            "Bearerabc",
            "Bearer,a.b.c",
            "Bearer:a.b.c",
            "Bearer\u{b}a.b.c",
            "Bearer\u{a0}a.b.c",
            "DPoPa.b.c",
        ] {
            let req = Request::new("GET", "/", &[("authorization", value)]);
            assert_eq!(
                found(&req, &[TokenSource::bearer()]),
                Err(Failure::InvalidRequest(MALFORMED_SCHEME.into())),
                "{value:?}"
            );
            assert!(!is_other_scheme(value, &["Bearer"], true), "{value:?}");
        }
    }

    #[test]
    fn the_scheme_is_followed_by_any_spaces_and_tabs() {
        for value in [
            "Bearer\ta.b.c",
            "Bearer \t a.b.c",
            "\tbearer a.b.c\t",
            " Bearer a.b.c",
        ] {
            let req = Request::new("GET", "/", &[("authorization", value)]);
            assert_eq!(
                found(&req, &[TokenSource::bearer()]),
                Ok(Some(Found {
                    token: "a.b.c",
                    source: 0,
                    scheme: Scheme::Bearer,
                    header: Some("authorization"),
                })),
                "{value:?}"
            );
        }
        let req = Request::new("GET", "/", &[("authorization", "DPoP\ta.b.c")]);
        assert_eq!(
            found(&req, &[TokenSource::bearer()]),
            Ok(Some(Found {
                token: "a.b.c",
                source: 0,
                scheme: Scheme::Dpop,
                header: Some("authorization"),
            }))
        );
        // A custom scheme reads the same way.
        let token = TokenSource::Header {
            name: "x-api-token".into(),
            prefix: "Token ".into(),
        };
        let req = Request::new("GET", "/", &[("x-api-token", "token\ta.b.c")]);
        assert!(matches!(
            found(&req, std::slice::from_ref(&token)),
            Ok(Some(Found { token: "a.b.c", .. }))
        ));
        // DPoP rides only on `Authorization: Bearer`.
        let req = Request::new("GET", "/", &[("x-api-token", "DPoP a.b.c")]);
        assert_eq!(found(&req, &[token]), Ok(None));
    }

    #[test]
    fn a_scheme_header_is_a_singleton() {
        // Envoy joins repeated headers with `,` into one value.
        for value in [
            "Basic dXNlcjpwYXNz,Bearer a.b.c",
            "Negotiate x,\tDPoP a.b.c",
        ] {
            let req = Request::new("GET", "/", &[("authorization", value)]);
            assert_eq!(
                found(&req, &[TokenSource::bearer()]),
                Err(Failure::InvalidRequest(MORE_THAN_ONE.into())),
                "{value}"
            );
        }
        // After our scheme, a comma is in the token, which is then not a b64token (400).
        let req = Request::new(
            "GET",
            "/",
            &[("authorization", "Bearer a.b.c, bearer d.e.f")],
        );
        assert_eq!(malformed(&req, &[TokenSource::bearer()]), Some(true));
        // Commas inside another scheme's parameters are that scheme's business.
        let digest = r#"Digest username="u", realm="r", nonce="n""#;
        let req = Request::new("GET", "/", &[("authorization", digest)]);
        assert_eq!(found(&req, &[TokenSource::bearer()]), Ok(None));
        for second in ["Bearer a.b.c", "Basic dXNlcjpwYXNz"] {
            let req = Request::new(
                "GET",
                "/",
                &[("authorization", "Bearer a.b.c"), ("authorization", second)],
            );
            assert_eq!(
                found(&req, &[TokenSource::bearer()]),
                Err(Failure::InvalidRequest(MORE_THAN_ONE.into())),
                "{second}"
            );
        }
    }

    #[test]
    fn empty_bearer_is_invalid_request_and_bad_characters_are_not_b64token() {
        // Envoy trims the value's trailing whitespace: `Bearer ` arrives as `Bearer`.
        for value in ["Bearer ", "Bearer    ", "Bearer", "bearer\t", "DPoP"] {
            let req = Request::new("GET", "/", &[("authorization", value)]);
            assert_eq!(
                found(&req, &[TokenSource::bearer()]),
                Err(Failure::InvalidRequest(EMPTY.into())),
                "{value:?}"
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
            Ok(Some(Found { token, .. })) => Some(!is_b64token(token)),
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
                Ok(Some(Found {
                    token: "t1",
                    source: i,
                    scheme: Scheme::Bearer,
                    header: [Some("authorization"), Some("x-token")]
                        .get(i)
                        .copied()
                        .flatten(),
                }))
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
                Err(Failure::InvalidRequest(
                    "More than one method used for authentication".into()
                )),
                "{req:?}"
            );
        }
    }

    #[test]
    fn only_configured_sources_count() {
        let req = Request::new("GET", "/?access_token=t", &[]);
        assert_eq!(found(&req, &[TokenSource::bearer()]), Ok(None));
    }

    #[test]
    fn oversized_tokens_are_refused_before_decoding() {
        let big = format!("Bearer {}", "a".repeat(MAX + 1));
        let req = Request::new("GET", "/", &[("authorization", &big)]);
        assert_eq!(
            found(&req, &[TokenSource::bearer()]),
            Err(invalid_token(TOO_LARGE))
        );
        let ok = format!("Bearer {}", "a".repeat(MAX));
        let req = Request::new("GET", "/", &[("authorization", &ok)]);
        assert!(matches!(
            found(&req, &[TokenSource::bearer()]),
            Ok(Some(Found { .. }))
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
            response: vec![],
        };
        assert_eq!(
            removal(&req, &sources[0], Some("authorization")),
            changes(&["authorization"], &[], None)
        );
        assert_eq!(
            removal(&req, &sources[2], None),
            changes(&[], &[(":path", "/p?a=1&b=2")], None)
        );
        assert_eq!(
            removal(&req, &sources[3], None),
            changes(&[], &[("cookie", "x=1; y=2")], None)
        );
        let only = Request::new("GET", "/p?access_token=t", &[("cookie", "at=t")]);
        assert_eq!(
            removal(&only, &sources[2], None),
            changes(&[], &[(":path", "/p")], None)
        );
        assert_eq!(
            removal(&only, &sources[3], None),
            changes(&["cookie"], &[], None)
        );
        // The other fields stay as they came (still encoded); content-length follows.
        let posted = form(
            "POST",
            "a=%41+b&access_token=t&&c",
            &[("content-length", "25")],
        );
        assert_eq!(
            removal(&posted, &sources[4], None),
            changes(&[], &[("content-length", "9")], Some("a=%41+b&c"))
        );
        let chunked = form("POST", "access_token=t", &[]);
        assert_eq!(
            removal(&chunked, &sources[4], None),
            changes(&[], &[], Some(""))
        );
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

    #[test]
    fn every_spelling_of_a_query_name_is_the_source() {
        let sources = [TokenSource::Query("access_token".into())];
        for path in [
            "/?access%5Ftoken=t",
            "/?access%5ftoken=t",
            "/?ACCESS_TOKEN=t",
            "/?Access_Token=t",
            "/?access.token=t",
            "/?access+token=t",
            "/?access%20token=t",
            "/?access[token=t",
            "/?access_token[]=t",
            "/?access_token[0]=t",
            "/?access_token%5B%5D=t",
            "/?%61ccess_token=t",
            "/?access_token%00x=t",
            "/?+access_token=t",
            "/?a=1&access%5Ftoken=t&b=2",
        ] {
            let req = Request::new("GET", path, &[]);
            assert!(
                matches!(found(&req, &sources), Ok(Some(Found { token: "t", .. }))),
                "{path}"
            );
        }
        for path in ["/?access_tokens=t", "/?access-token=t", "/?xaccess_token=t"] {
            let req = Request::new("GET", path, &[]);
            assert_eq!(found(&req, &sources), Ok(None), "{path}");
        }
        // Two spellings are two tokens.
        let req = Request::new("GET", "/?access_token=a&access%5Ftoken=b", &[]);
        assert_eq!(
            found(&req, &sources),
            Err(Failure::InvalidRequest(MORE_THAN_ONE.into()))
        );
        let req = Request::new(
            "GET",
            "/?access%5Ftoken=a",
            &[("authorization", "Bearer b")],
        );
        assert_eq!(
            found(&req, &[TokenSource::bearer(), sources[0].clone()]),
            Err(Failure::InvalidRequest(MORE_THAN_ONE.into()))
        );
        // An empty value under any spelling is an empty token.
        let req = Request::new("GET", "/?ACCESS.TOKEN=", &[]);
        assert_eq!(
            found(&req, &sources),
            Err(Failure::InvalidRequest(EMPTY.into()))
        );
    }

    #[test]
    fn a_token_that_the_separators_read_two_ways_is_ambiguous() {
        let sources = [TokenSource::Query("access_token".into())];
        for path in [
            "/?x=1;access_token=t",
            "/?access_token=t;x=1",
            "/?a=1&b=2;access%5Ftoken=t",
        ] {
            let req = Request::new("GET", path, &[]);
            assert_eq!(
                found(&req, &sources),
                Err(Failure::InvalidRequest(AMBIGUOUS.into())),
                "{path}"
            );
        }
        // A `;` elsewhere in the query changes nothing.
        let req = Request::new("GET", "/?q=a;b&access_token=t", &[]);
        assert!(matches!(
            found(&req, &sources),
            Ok(Some(Found { token: "t", .. }))
        ));
        let cookie = [TokenSource::Cookie("at".into())];
        for header in ["x=1, at=t", "at=t,x=1", "a=1; b=2,AT=t"] {
            let req = Request::new("GET", "/", &[("cookie", header)]);
            assert_eq!(
                found(&req, &cookie),
                Err(Failure::InvalidRequest(AMBIGUOUS.into())),
                "{header}"
            );
        }
        let req = Request::new("GET", "/", &[("cookie", "prefs=a,b; at=t")]);
        assert!(matches!(
            found(&req, &cookie),
            Ok(Some(Found { token: "t", .. }))
        ));
    }

    #[test]
    fn every_spelling_of_a_cookie_or_field_name_is_the_source() {
        let cookie = [TokenSource::Cookie("at".into())];
        for header in ["AT=t", "a%74=t", "x=1;at=t", " at = t "] {
            let req = Request::new("GET", "/", &[("cookie", header)]);
            assert!(
                matches!(found(&req, &cookie), Ok(Some(Found { token: "t", .. }))),
                "{header}"
            );
        }
        let req = Request::new("GET", "/", &[("cookie", "at=a"), ("cookie", "A%54=b")]);
        assert_eq!(
            found(&req, &cookie),
            Err(Failure::InvalidRequest(MORE_THAN_ONE.into()))
        );
        let body = [TokenSource::Body("access_token".into())];
        for fields in ["access%5Ftoken=t", "ACCESS.TOKEN=t", "access_token[]=t"] {
            let req = form("POST", fields, &[]);
            assert!(
                matches!(found(&req, &body), Ok(Some(Found { token: "t", .. }))),
                "{fields}"
            );
        }
    }

    #[test]
    fn removal_takes_out_every_spelling() {
        let req = Request::new(
            "GET",
            "/p?a=1&ACCESS%5Ftoken=t&b=2",
            &[("cookie", "x=1; A%54=t")],
        );
        let query = removal(&req, &TokenSource::Query("access_token".into()), None);
        assert_eq!(query.set, [(":path".to_string(), "/p?a=1&b=2".to_string())]);
        let cookie = removal(&req, &TokenSource::Cookie("at".into()), None);
        assert_eq!(cookie.set, [("cookie".to_string(), "x=1".to_string())]);
        let posted = form("POST", "a=1&access.token=t", &[]);
        let body = removal(&posted, &TokenSource::Body("access_token".into()), None);
        assert_eq!(body.body.as_deref(), Some("a=1"));
    }

    #[test]
    fn a_compressed_form_body_is_refused_where_a_source_reads_bodies() {
        let ct = ("content-type", "application/x-www-form-urlencoded");
        let body = [
            TokenSource::bearer(),
            TokenSource::Body("access_token".into()),
        ];
        for encoding in ["gzip", "deflate", "br", "identity, gzip", ""] {
            let req = Request::new(
                "POST",
                "/",
                &[
                    ct,
                    ("content-encoding", encoding),
                    ("authorization", "Bearer t"),
                ],
            );
            assert_eq!(found(&req, &body), Err(Failure::EncodedBody), "{encoding}");
        }
        let plain = Request::new("POST", "/", &[ct, ("content-encoding", "Identity")]);
        assert_eq!(found(&plain, &body), Ok(None));
        // Not a form, or not a method with a body: nothing a stack reads a token from.
        for req in [
            Request::new(
                "POST",
                "/",
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "gzip"),
                ],
            ),
            Request::new("GET", "/", &[ct, ("content-encoding", "gzip")]),
        ] {
            assert_eq!(found(&req, &body), Ok(None), "{req:?}");
        }
        // Without a body source, a compressed body is none of the filter's business.
        let req = Request::new("POST", "/", &[ct, ("content-encoding", "gzip")]);
        assert_eq!(found(&req, &[TokenSource::bearer()]), Ok(None));
        // Any of several content-type values makes it a form.
        let two = Request::new(
            "POST",
            "/",
            &[
                ("content-type", "text/plain"),
                ct,
                ("content-encoding", "gzip"),
            ],
        );
        assert_eq!(found(&two, &body), Err(Failure::EncodedBody));
    }

    #[test]
    fn a_header_source_reads_every_spelling_of_its_name() {
        let token = TokenSource::Header {
            name: "x-api-token".into(),
            prefix: String::new(),
        };
        let sources = [TokenSource::bearer(), token.clone()];
        for name in ["x_api_token", "X_Api_Token", "x.api.token"] {
            let req = Request::new("GET", "/", &[(name, "t")]);
            let spelled = name.to_ascii_lowercase();
            assert_eq!(
                found(&req, &sources),
                Ok(Some(Found {
                    token: "t",
                    source: 1,
                    scheme: Scheme::Bearer,
                    header: Some(spelled.as_str()),
                })),
                "{name}"
            );
            let both = Request::new("GET", "/", &[("x-api-token", "t"), (name, "u")]);
            assert_eq!(
                found(&both, &sources),
                Err(Failure::InvalidRequest(MORE_THAN_ONE.into())),
                "{name}"
            );
            // The removal takes it out under the name it came in.
            let removed = removal(&req, &token, Some(&spelled));
            assert_eq!(removed.remove, std::slice::from_ref(&spelled), "{name}");
        }
        let req = Request::new("GET", "/", &[("x-api-tokens", "t")]);
        assert_eq!(found(&req, &sources), Ok(None));
    }
}
