//! Models of how common upstream stacks read credentials from a request: the token a
//! query parser, a cookie parser or an `Authorization` parser would hand the application.
//! Written from each stack's documented (or, where undocumented, observed) behaviour; each
//! model names the stack. Used by `tests/agreement.rs`: whatever a model reads from a
//! request the filter lets through must be a token the filter verified.

/// A request as it goes upstream.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Forwarded {
    fn query(&self) -> &str {
        self.path.split_once('?').map_or("", |(_, q)| q)
    }

    fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A model: its stack's name, and the tokens it reads (`query`, `cookie`: the names the
/// filter is configured with).
pub type Model = (&'static str, fn(&Forwarded, &str) -> Vec<String>);

/// Percent-decoding; `plus`: `+` is a space. Invalid escapes are kept (`None` if `strict`).
fn decode(s: &str, plus: bool, strict: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
            match hex {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None if strict => return None,
                None => {}
            }
        }
        out.push(if plus && b == b'+' { b' ' } else { b });
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn pairs<'a>(text: &'a str, seps: &'a [char]) -> impl Iterator<Item = (&'a str, &'a str)> {
    text.split(seps)
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// `name[...]` → `name` (bracket notation of qs, Rack, PHP).
fn bracket_base(name: &str) -> &str {
    match name.find('[') {
        Some(i) if name[i..].contains(']') => &name[..i],
        _ => name,
    }
}

/// PHP's variable-name mangling: leading spaces dropped, `.` and ` ` to `_`, an unclosed
/// `[` to `_`, a bracket suffix cut.
fn php_name(name: &str) -> String {
    let name = name.trim_start_matches(' ');
    let base = bracket_base(name);
    base.chars()
        .map(|c| if matches!(c, '.' | ' ' | '[') { '_' } else { c })
        .collect()
}

fn non_empty(v: Vec<String>) -> Vec<String> {
    v.into_iter().filter(|t| !t.trim().is_empty()).collect()
}

// --- Query strings -------------------------------------------------------------------

fn qs(f: &Forwarded, want: &str) -> Vec<String> {
    // Express 4's default (`qs`): `&`, names and values decoded, brackets.
    pairs(f.query(), &['&'])
        .filter_map(|(k, v)| {
            let k = decode(k, true, false)?;
            (bracket_base(&k) == want)
                .then(|| decode(v, true, false))
                .flatten()
        })
        .collect()
}

fn node_querystring(f: &Forwarded, want: &str) -> Vec<String> {
    // Express 5's default (`querystring`): `&`, decoded, no brackets.
    pairs(f.query(), &['&'])
        .filter(|(k, _)| decode(k, true, false).as_deref() == Some(want))
        .filter_map(|(_, v)| decode(v, true, false))
        .collect()
}

fn go_parse_query(f: &Forwarded, want: &str) -> Vec<String> {
    // Go's `url.ParseQuery` (1.17+): `&`; a pair with `;` or a bad escape is dropped.
    pairs(f.query(), &['&'])
        .filter(|(k, v)| !k.contains(';') && !v.contains(';'))
        .filter_map(|(k, v)| Some((decode(k, true, true)?, decode(v, true, true)?)))
        .filter(|(k, _)| k == want)
        .map(|(_, v)| v)
        .collect()
}

fn python_parse_qs(f: &Forwarded, want: &str) -> Vec<String> {
    // Python 3.10+ `urllib.parse.parse_qs`: `&`, decoded, blank values dropped.
    pairs(f.query(), &['&'])
        .filter(|(k, _)| decode(k, true, false).as_deref() == Some(want))
        .filter_map(|(_, v)| decode(v, true, false))
        .collect()
}

fn python_legacy_parse_qs(f: &Forwarded, want: &str) -> Vec<String> {
    // Python before 3.10 (and Rack before 3): `&` and `;`.
    pairs(f.query(), &['&', ';'])
        .filter(|(k, _)| decode(k, true, false).as_deref() == Some(want))
        .filter_map(|(_, v)| decode(v, true, false))
        .collect()
}

fn servlet(f: &Forwarded, want: &str) -> Vec<String> {
    // Java servlets (`getParameterValues`): `&`, decoded, exact names.
    python_parse_qs(f, want)
}

fn php_get(f: &Forwarded, want: &str) -> Vec<String> {
    // PHP `$_GET`: `&`, decoded, names mangled.
    pairs(f.query(), &['&'])
        .filter_map(|(k, v)| {
            let k = decode(k, true, false)?;
            let k = k.split('\0').next().unwrap_or_default().to_string();
            (php_name(&k) == want)
                .then(|| decode(v, true, false))
                .flatten()
        })
        .collect()
}

fn rack_legacy(f: &Forwarded, want: &str) -> Vec<String> {
    // Rack before 3: `&` and `;`, decoded, brackets.
    pairs(f.query(), &['&', ';'])
        .filter_map(|(k, v)| {
            let k = decode(k.trim_start(), true, false)?;
            (bracket_base(&k) == want)
                .then(|| decode(v, true, false))
                .flatten()
        })
        .collect()
}

fn nginx_arg(f: &Forwarded, want: &str) -> Vec<String> {
    // nginx `$arg_name`: `&`, names compared case-insensitively, the raw value of the first.
    pairs(f.query(), &['&'])
        .find(|(k, _)| k.eq_ignore_ascii_case(want))
        .map(|(_, v)| v.to_string())
        .into_iter()
        .collect()
}

pub const QUERY_MODELS: [Model; 9] = [
    ("express qs", qs),
    ("node querystring", node_querystring),
    ("go url.ParseQuery", go_parse_query),
    ("python parse_qs", python_parse_qs),
    ("python<3.10 / rack<3 parse_qs", python_legacy_parse_qs),
    ("java servlet", servlet),
    ("php $_GET", php_get),
    ("rack<3 brackets", rack_legacy),
    ("nginx $arg_", nginx_arg),
];

// --- Cookies --------------------------------------------------------------------------

fn cookie_pairs(f: &Forwarded, seps: &'static [char]) -> Vec<(String, String)> {
    f.values("cookie")
        .into_iter()
        .flat_map(|h| {
            h.split(seps)
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (k.trim().to_string(), v.trim().to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

fn express_cookie(f: &Forwarded, want: &str) -> Vec<String> {
    // `cookie` (Express's cookie-parser): `;`, raw names, first wins, quotes dropped,
    // the value URI-decoded when it can be.
    cookie_pairs(f, &[';'])
        .into_iter()
        .find(|(k, _)| k == want)
        .map(|(_, v)| decode(unquote(&v), false, true).unwrap_or(v))
        .into_iter()
        .collect()
}

fn go_cookie(f: &Forwarded, want: &str) -> Vec<String> {
    // Go `r.Cookie`: `;`, raw names, first wins, quotes dropped.
    cookie_pairs(f, &[';'])
        .into_iter()
        .find(|(k, _)| k == want)
        .map(|(_, v)| unquote(&v).to_string())
        .into_iter()
        .collect()
}

fn python_cookie(f: &Forwarded, want: &str) -> Vec<String> {
    // Python `http.cookies.SimpleCookie`: `;`, raw names, last wins, quotes dropped.
    cookie_pairs(f, &[';'])
        .into_iter()
        .rfind(|(k, _)| k == want)
        .map(|(_, v)| unquote(&v).to_string())
        .into_iter()
        .collect()
}

fn php_cookie(f: &Forwarded, want: &str) -> Vec<String> {
    // PHP `$_COOKIE`: `;`, names decoded and mangled, values decoded.
    cookie_pairs(f, &[';'])
        .into_iter()
        .filter(|(k, _)| decode(k, true, false).is_some_and(|k| php_name(&k) == want))
        .filter_map(|(_, v)| decode(&v, true, false))
        .collect()
}

fn rack_cookie(f: &Forwarded, want: &str) -> Vec<String> {
    // Rack before 3: `;` and `,`, names and values decoded.
    cookie_pairs(f, &[';', ','])
        .into_iter()
        .filter(|(k, _)| decode(k, true, false).as_deref() == Some(want))
        .filter_map(|(_, v)| decode(&v, true, false))
        .collect()
}

pub const COOKIE_MODELS: [Model; 5] = [
    ("express cookie-parser", express_cookie),
    ("go r.Cookie", go_cookie),
    ("python SimpleCookie", python_cookie),
    ("php $_COOKIE", php_cookie),
    ("rack<3 cookies", rack_cookie),
];

// --- Authorization --------------------------------------------------------------------

fn first_authorization(f: &Forwarded) -> Option<&str> {
    f.values("authorization").into_iter().next()
}

fn express_bearer(f: &Forwarded, _: &str) -> Vec<String> {
    // express-oauth2-jwt-bearer: `/^(Bearer|DPoP) (.+)$/i` on the first header.
    let Some(h) = first_authorization(f) else {
        return vec![];
    };
    let Some((scheme, rest)) = h.split_once(' ') else {
        return vec![];
    };
    let ok = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop");
    non_empty(ok.then(|| rest.to_string()).into_iter().collect())
}

fn whitespace_split(f: &Forwarded, _: &str) -> Vec<String> {
    // Python `auth.split()` (DRF, Flask extensions): any Unicode whitespace.
    let Some(h) = first_authorization(f) else {
        return vec![];
    };
    let parts: Vec<&str> = h.split_whitespace().collect();
    match parts.as_slice() {
        [scheme, token] if ["bearer", "dpop"].contains(&scheme.to_lowercase().as_str()) => {
            vec![token.to_string()]
        }
        _ => vec![],
    }
}

fn token_schemes(f: &Forwarded, _: &str) -> Vec<String> {
    // djangorestframework-simplejwt / -jwt style: `JWT`, `Token`, `Bearer` keywords.
    let Some(h) = first_authorization(f) else {
        return vec![];
    };
    let parts: Vec<&str> = h.split_whitespace().collect();
    match parts.as_slice() {
        [scheme, token] if ["bearer", "jwt", "token"].contains(&scheme.to_lowercase().as_str()) => {
            vec![token.to_string()]
        }
        _ => vec![],
    }
}

fn spring_substring(f: &Forwarded, _: &str) -> Vec<String> {
    // Java: `if (h.startsWith("Bearer")) token = h.substring(7)` (a common hand-written
    // filter; "Bearer" without its space).
    let Some(h) = first_authorization(f) else {
        return vec![];
    };
    non_empty(
        h.starts_with("Bearer")
            .then(|| h.get(7..).unwrap_or_default().to_string())
            .into_iter()
            .collect(),
    )
}

fn lax_prefix(f: &Forwarded, _: &str) -> Vec<String> {
    // JavaScript: `h.replace(/^bearer[\s:,]*/i, '')` when it starts with "bearer".
    let Some(h) = first_authorization(f) else {
        return vec![];
    };
    let lower = h.to_lowercase();
    if !lower.starts_with("bearer") {
        return vec![];
    }
    let rest = h
        .get(6..)
        .unwrap_or_default()
        .trim_start_matches(|c: char| c.is_whitespace() || c == ':' || c == ',');
    non_empty(vec![rest.to_string()])
}

fn wsgi_joined(f: &Forwarded, _: &str) -> Vec<String> {
    // WSGI servers join repeated headers with `,`; then `split()`.
    let joined = f.values("authorization").join(",");
    let parts: Vec<&str> = joined.split_whitespace().collect();
    match parts.as_slice() {
        [scheme, token] if scheme.eq_ignore_ascii_case("bearer") => vec![token.to_string()],
        _ => vec![],
    }
}

fn last_authorization(f: &Forwarded, _: &str) -> Vec<String> {
    // Stacks that keep the last of repeated headers, with `split()`.
    let Some(h) = f.values("authorization").into_iter().last() else {
        return vec![];
    };
    let parts: Vec<&str> = h.split_whitespace().collect();
    match parts.as_slice() {
        [scheme, token] if scheme.eq_ignore_ascii_case("bearer") => vec![token.to_string()],
        _ => vec![],
    }
}

pub const AUTHORIZATION_MODELS: [Model; 7] = [
    ("express-oauth2-jwt-bearer", express_bearer),
    ("python split()", whitespace_split),
    ("JWT/Token keywords", token_schemes),
    ("java substring(7)", spring_substring),
    ("js replace(/^bearer[\\s:,]*/i)", lax_prefix),
    ("wsgi joined headers", wsgi_joined),
    ("last header wins", last_authorization),
];

// --- A header source (`x-api-token`) ---------------------------------------------------

fn exact_header(f: &Forwarded, want: &str) -> Vec<String> {
    // Node, Go, Java: the header by its name, case-insensitively, first instance.
    f.values(want)
        .into_iter()
        .take(1)
        .map(String::from)
        .collect()
}

fn cgi_header(f: &Forwarded, want: &str) -> Vec<String> {
    // CGI, WSGI, Rack, PHP: `HTTP_` + the name upper-cased with every symbol as `_`.
    let fold = crate::header_names::cgi_variable;
    f.headers
        .iter()
        .filter(|(n, _)| fold(n) == fold(want))
        .map(|(_, v)| v.clone())
        .collect()
}

pub const HEADER_MODELS: [Model; 2] = [
    ("node/go/java header", exact_header),
    ("cgi HTTP_X_API_TOKEN", cgi_header),
];
