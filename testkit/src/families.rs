//! Small models of how common upstream families resolve a request path, written from their
//! documented behaviour and known attacks, independently of the filter's own code. Each
//! model takes the raw `:path` (query removed) and returns the path its router matches, or
//! `None` when the family refuses the request (400) or only redirects.

/// What a route needs, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    Nothing,
    Token,
    Scope,
}

/// A route of the upstream: path, whether it is a prefix, methods (none: any), need.
pub type Route = (&'static str, bool, &'static [&'static str], Need);

/// The test's own case folding (ASCII and Unicode lower case, fullwidth forms as ASCII).
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap(),
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The first route matching `path` and `method`, compared exactly or folded.
pub fn route(routes: &[Route], path: &str, method: &str, folded: bool) -> Option<Need> {
    let key = |s: &str| if folded { fold(s) } else { s.to_string() };
    routes
        .iter()
        .find(|(p, prefix, methods, _)| {
            let (p, path) = (key(p), key(path));
            let path_ok = if *prefix {
                path.starts_with(&p)
            } else {
                path == p
            };
            path_ok && (methods.is_empty() || methods.contains(&method))
        })
        .map(|r| r.3)
}

/// The path a family resolves `raw` to and what it needs before serving it: the most any
/// route its matching reaches needs. `None` when it refuses the request or reaches no route
/// (the upstream's routes are the rules': it answers 404).
pub fn family_need(
    family: &Family,
    routes: &[Route],
    method: &str,
    raw: &str,
) -> Option<(String, Need)> {
    let path = (family.read)(raw.split('?').next().unwrap_or_default())?;
    let Lenient {
        case,
        trailing_slash,
        suffix,
    } = family.lenient;
    let mut forms = vec![path.clone()];
    if trailing_slash && path.len() > 1 && path.ends_with('/') {
        forms.push(path.trim_end_matches('/').to_string());
    }
    if suffix {
        let last = path.rfind('/').map_or(0, |i| i + 1);
        if let Some(dot) = path[last..].get(1..).and_then(|s| s.find('.')) {
            forms.push(path[..last + 1 + dot].to_string());
        }
    }
    let mut need = None;
    for form in &forms {
        for folded in [false, true] {
            if folded && !case {
                continue;
            }
            if let Some(n) = route(routes, form, method, folded) {
                need = need.max(Some(n));
            }
        }
    }
    need.map(|n| (path, n))
}

/// How a family's router may also match a route to a path (besides exactly).
#[derive(Clone, Copy, Default)]
pub struct Lenient {
    /// Case-insensitively (and fullwidth letters as ASCII, for IIS).
    pub case: bool,
    /// Without a trailing slash.
    pub trailing_slash: bool,
    /// Without an extension (`x.json` as `x`).
    pub suffix: bool,
}

pub struct Family {
    pub name: &'static str,
    pub read: fn(&str) -> Option<String>,
    pub lenient: Lenient,
}

pub const FAMILIES: [Family; 12] = [
    Family {
        name: "envoy (normalize_path, merge_slashes, UNESCAPE_AND_FORWARD)",
        read: envoy,
        lenient: Lenient {
            case: true, // a route with case_sensitive: false
            trailing_slash: false,
            suffix: false,
        },
    },
    Family {
        name: "nginx",
        read: nginx,
        lenient: Lenient::NONE,
    },
    Family {
        name: "go net/http ServeMux",
        read: go_servemux,
        lenient: Lenient::NONE,
    },
    Family {
        name: "go chi (no cleaning)",
        read: go_chi,
        lenient: Lenient::NONE,
    },
    Family {
        name: "tomcat",
        read: tomcat,
        lenient: Lenient::NONE,
    },
    Family {
        name: "spring mvc 5 (AntPathMatcher: suffix, trailing slash, case-insensitive)",
        read: tomcat,
        lenient: Lenient {
            case: true,
            trailing_slash: true,
            suffix: true,
        },
    },
    Family {
        name: "spring 6 PathPattern (raw URI segments)",
        read: spring_path_pattern,
        lenient: Lenient {
            case: false,
            trailing_slash: true,
            suffix: false,
        },
    },
    Family {
        name: "jetty",
        read: jetty,
        lenient: Lenient::NONE,
    },
    Family {
        name: "node express",
        read: express,
        lenient: Lenient {
            case: true,
            trailing_slash: true,
            suffix: false,
        },
    },
    Family {
        name: "node WHATWG URL",
        read: whatwg_url,
        lenient: Lenient::NONE,
    },
    Family {
        name: "python (django, flask, starlette)",
        read: python,
        lenient: Lenient::NONE,
    },
    Family {
        name: "iis / asp.net on windows",
        read: iis,
        lenient: Lenient {
            case: true,
            trailing_slash: true,
            suffix: false,
        },
    },
];

impl Lenient {
    const NONE: Lenient = Lenient {
        case: false,
        trailing_slash: false,
        suffix: false,
    };
}

/// Envoy with every normalisation on: `%2F`/`%5C` unescaped, backslashes as slashes, dot
/// segments (`%2e` included) resolved, clamped at the root, slashes merged.
fn envoy(raw: &str) -> Option<String> {
    let p = before(raw, '#');
    let p = replace_ci(&replace_ci(p, "%2f", "/"), "%5c", "\\").replace('\\', "/");
    Some(merge_slashes(&remove_dots(&p, dot_or_encoded_dot, true)?))
}

/// nginx: decodes, merges slashes, resolves dots; `..` above the root and NUL are 400.
fn nginx(raw: &str) -> Option<String> {
    let bytes = decode(before(raw, '#'), false)?;
    if bytes.contains(&0) {
        return None;
    }
    remove_dots(&merge_slashes(&lossy(bytes)), plain_dot, false)
}

/// Go's ServeMux: `URL.Path` (decoded, `%2F` included; `#` is not special in a request
/// URI), then `path.Clean`: it redirects to the clean path, which is what it ends up serving.
fn go_servemux(raw: &str) -> Option<String> {
    let path = lossy(decode(raw, false)?);
    remove_dots(&merge_slashes(&path), plain_dot, true)
}

/// chi and other Go routers that route on `URL.Path` as is.
fn go_chi(raw: &str) -> Option<String> {
    Some(lossy(decode(raw, false)?))
}

/// Tomcat (and Spring MVC on it): `;` parameters removed from each raw segment, then
/// decoded; `%2F`, `\`, NUL, `#` and bad UTF-8 are 400; slashes merged; dots resolved.
fn tomcat(raw: &str) -> Option<String> {
    let stripped = servlet_checks(raw)?;
    let path = String::from_utf8(decode(&stripped, false)?).ok()?;
    if path.contains(['\\', '\0']) {
        return None;
    }
    remove_dots(&merge_slashes(&path), plain_dot, false)
}

/// Spring 6's PathPattern matching on the raw request URI (after Tomcat's checks): each
/// segment without parameters, decoded; `..` and `//` are not resolved.
fn spring_path_pattern(raw: &str) -> Option<String> {
    let stripped = servlet_checks(raw)?;
    let path = String::from_utf8(decode(&stripped, false)?).ok()?;
    (!path.contains(['\\', '\0'])).then_some(path)
}

/// Jetty: parameters removed, decoded (`%2F` as `/`), dots resolved on the decoded path,
/// slashes not merged.
fn jetty(raw: &str) -> Option<String> {
    let stripped = strip_parameters(before(raw, '#'));
    let path = lossy(decode(&stripped, false)?);
    remove_dots(&path, plain_dot, false)
}

/// Express: the raw pathname, not decoded, dots and slashes as sent.
fn express(raw: &str) -> Option<String> {
    Some(before(raw, '#').to_string())
}

/// The WHATWG URL parser (`new URL(req.url, base)`): tabs and newlines dropped, `\` as `/`,
/// a leading `//` starts a host, dot segments (`%2e` too) resolved, nothing decoded.
fn whatwg_url(raw: &str) -> Option<String> {
    let p: String = raw
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let p = before(&p, '#').replace('\\', "/");
    let p = match p.strip_prefix("//") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]).to_string(),
        None => p,
    };
    remove_dots(&p, dot_or_encoded_dot, true)
}

/// WSGI/ASGI frameworks: the decoded path (bad escapes kept, bad UTF-8 replaced), dots and
/// slashes as sent.
fn python(raw: &str) -> Option<String> {
    Some(lossy(decode(before(raw, '#'), true)?))
}

/// IIS and ASP.NET on Windows: `%uXXXX` and overlong UTF-8 decoded, decoded twice, Windows
/// best-fit (fullwidth forms, slash and dot look-alikes as ASCII), `\` as `/`, trailing dots
/// and spaces trimmed from each segment, dots resolved, slashes merged.
fn iis(raw: &str) -> Option<String> {
    let once = decode_iis(before(raw, '#'));
    let twice = decode_iis(&once);
    if twice.contains('\0') {
        return None;
    }
    let fitted: String = twice.chars().map(best_fit).collect();
    let slashed = fitted.replace('\\', "/");
    let trimmed: Vec<&str> = slashed
        .split('/')
        .map(|s| match s.trim_end_matches(' ') {
            dots @ ("." | "..") => dots,
            _ => s.trim_end_matches(['.', ' ']),
        })
        .collect();
    remove_dots(&merge_slashes(&trimmed.join("/")), plain_dot, false)
}

// ---- Shared pieces of the models ----

fn before(s: &str, c: char) -> &str {
    s.split(c).next().unwrap_or_default()
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Percent-decoding; a malformed escape is kept as is (`keep_bad`) or refused.
fn decode(s: &str, keep_bad: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) if s[i + 1..i + 3].bytes().all(|c| c.is_ascii_hexdigit()) => {
                out.push(v);
                i += 3;
            }
            (b'%', _) if !keep_bad => return None,
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// IIS's decoder: `%uXXXX`, `%XX`, UTF-8 with overlong two-byte forms read as ASCII.
fn decode_iis(s: &str) -> String {
    let mut bytes = Vec::new();
    let mut units = String::new();
    let mut i = 0;
    let flush = |bytes: &mut Vec<u8>, units: &mut String| {
        let mut j = 0;
        while j < bytes.len() {
            if matches!(bytes[j], 0xC0 | 0xC1) && j + 1 < bytes.len() {
                units.push(char::from(((bytes[j] & 0x1F) << 6) | (bytes[j + 1] & 0x3F)));
                j += 2;
                continue;
            }
            let end = (j + 1..=bytes.len())
                .find(|&e| std::str::from_utf8(&bytes[j..e]).is_ok())
                .unwrap_or(j + 1);
            units.push_str(&String::from_utf8_lossy(&bytes[j..end]));
            j = end;
        }
        bytes.clear();
    };
    let b = s.as_bytes();
    let hex = |from: usize, len: usize| {
        b.get(from..from + len)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    while i < b.len() {
        let unicode = (b[i] == b'%' && b.get(i + 1) == Some(&b'u'))
            .then(|| hex(i + 2, 4).and_then(char::from_u32))
            .flatten();
        if let Some(v) = unicode {
            flush(&mut bytes, &mut units);
            units.push(v);
            i += 6;
        } else if let Some(v) = (b[i] == b'%').then(|| hex(i + 1, 2)).flatten() {
            bytes.push(v as u8);
            i += 3;
        } else {
            bytes.push(b[i]);
            i += 1;
        }
    }
    flush(&mut bytes, &mut units);
    units
}

/// Windows best-fit mapping of the characters that matter for paths.
fn best_fit(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap(),
        '\u{2215}' | '\u{2044}' => '/',
        '\u{29F5}' | '\u{FE68}' => '\\',
        '\u{2024}' | '\u{FE52}' => '.',
        _ => c,
    }
}

fn replace_ci(s: &str, from: &str, to: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < s.len() {
        match s.get(i..i + from.len()) {
            Some(w) if w.eq_ignore_ascii_case(from) => {
                out.push_str(to);
                i += from.len();
            }
            _ => {
                let c = s[i..].chars().next().unwrap();
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// Tomcat's request-line checks and parameter removal.
fn servlet_checks(raw: &str) -> Option<String> {
    if raw.contains(['#', '\\']) || raw.to_ascii_lowercase().contains("%2f") {
        return None;
    }
    Some(strip_parameters(raw))
}

/// Each segment up to its first `;`.
fn strip_parameters(raw: &str) -> String {
    raw.split('/')
        .map(|s| before(s, ';'))
        .collect::<Vec<_>>()
        .join("/")
}

fn merge_slashes(p: &str) -> String {
    let mut out = String::new();
    for c in p.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

fn plain_dot(s: &str) -> u8 {
    match s {
        "." => 1,
        ".." => 2,
        _ => 0,
    }
}

fn dot_or_encoded_dot(s: &str) -> u8 {
    plain_dot(&replace_ci(s, "%2e", "."))
}

/// RFC 3986 dot-segment removal; `..` at the root stays there (`clamp`) or is refused.
fn remove_dots(p: &str, dots: fn(&str) -> u8, clamp: bool) -> Option<String> {
    let p = p.strip_prefix('/')?;
    let segments: Vec<&str> = p.split('/').collect();
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match dots(s) {
            1 => trailing = last,
            2 => {
                if out.pop().is_none() && !clamp {
                    return None;
                }
                trailing = last;
            }
            _ => out.push(s),
        }
    }
    let mut path = format!("/{}", out.join("/"));
    if trailing && !path.ends_with('/') {
        path.push('/');
    }
    Some(path)
}
