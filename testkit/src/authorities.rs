//! Small models of how common upstream stacks read the host a request is for, written from
//! their documented behaviour and source, independently of the filter's own code. Each
//! model takes the authority as the upstream receives it (the `Host` header Envoy sends, the
//! `:authority` the filter saw) and returns the host name its routing compares (lower case),
//! `Some("")` when it reads no host (its default server or route), or `None` when the stack
//! refuses the request (400).
//!
//! Used by `filter/tests/authorities.rs`.

/// A stack: its name and how it reads the host.
pub type HostModel = (&'static str, fn(&str) -> Option<String>);

pub const HOST_MODELS: [HostModel; 7] = [
    ("node express req.hostname", express),
    ("node WHATWG URL", whatwg),
    ("go net/http r.Host + ServeMux", go),
    ("python urllib urlsplit().hostname", python_urlsplit),
    ("python django get_host", django),
    ("java tomcat getServerName", tomcat),
    ("nginx $host", nginx),
];

/// Express 4/5 `req.hostname` (no `trust proxy`): the `Host` header up to the first `:`
/// after an IPv6 literal's `]`; nothing else is checked (`vhost` then compares it ignoring
/// case).
pub fn express(host: &str) -> Option<String> {
    let offset = match host.starts_with('[') {
        true => host.find(']').map_or(0, |i| i + 1),
        false => 0,
    };
    let end = host
        .get(offset..)
        .and_then(|rest| rest.find(':'))
        .map_or(host.len(), |i| offset + i);
    Some(host[..end].to_lowercase())
}

/// The WHATWG URL parser (`new URL(req.url, "http://" + host)`: Fastify, Hono, Next.js,
/// Deno, Bun): outer C0 controls and spaces trimmed, tabs and newlines removed; the
/// authority ends at `/`, `\`, `?` or `#`; userinfo dropped; the port must be digits (empty
/// allowed) up to 65535; the host percent-decoded, lower-cased, refused with a forbidden
/// code point, and read as an IPv4 address when it ends in a number.
pub fn whatwg(host: &str) -> Option<String> {
    let trimmed: String = host
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let authority = trimmed.split(['/', '\\', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (name, port) = if host_port.starts_with('[') {
        let end = host_port.find(']')?;
        let literal = &host_port[1..end];
        literal.parse::<std::net::Ipv6Addr>().ok()?;
        let rest = &host_port[end + 1..];
        let port = match rest {
            "" => "",
            _ => rest.strip_prefix(':')?,
        };
        (host_port[..=end].to_lowercase(), port)
    } else {
        let (name, port) = host_port.split_once(':').unwrap_or((host_port, ""));
        (percent_decode(name)?.to_lowercase(), port)
    };
    let value = port.trim_start_matches('0');
    let port_ok = port.bytes().all(|b| b.is_ascii_digit())
        && value.len() <= 5
        && value.parse::<u32>().map_or(true, |p| p <= 65535);
    if !port_ok {
        return None;
    }
    if name.is_empty() {
        return None;
    }
    if name.starts_with('[') {
        return Some(name);
    }
    let forbidden = |c: char| c.is_control() || " #%/:<>?@[\\]^|".contains(c) || c == '\u{7f}';
    if name.chars().any(forbidden) {
        return None;
    }
    if ends_in_a_number(&name) {
        return whatwg_ipv4(&name);
    }
    Some(name)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
            _ => None,
        };
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn ends_in_a_number(name: &str) -> bool {
    let mut labels: Vec<&str> = name.split('.').collect();
    if labels.last() == Some(&"") && labels.len() > 1 {
        labels.pop();
    }
    let last = labels.last().copied().unwrap_or("");
    !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The WHATWG IPv4 parser: one to four parts, each decimal, octal (`0` first) or hex (`0x`).
fn whatwg_ipv4(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = name.split('.').collect();
    if parts.last() == Some(&"") && parts.len() > 1 {
        parts.pop();
    }
    if parts.len() > 4 {
        return None;
    }
    let mut numbers = Vec::new();
    for part in &parts {
        let (digits, radix) = if let Some(h) = part.strip_prefix("0x") {
            (h, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (*part, 10)
        };
        let n = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        numbers.push(n);
    }
    let (last, front) = numbers.split_last()?;
    if front.iter().any(|&n| n > 255) || *last >= 256u64.pow(5 - numbers.len() as u32) {
        return None;
    }
    let mut address = *last;
    for (i, n) in front.iter().enumerate() {
        address += n << (8 * (3 - i));
    }
    let octets = (address as u32).to_be_bytes();
    Some(format!(
        "{}.{}.{}.{}",
        octets[0], octets[1], octets[2], octets[3]
    ))
}

/// Go's net/http server: a `Host` with a byte outside `httpguts.ValidHostHeader`'s set is
/// refused (400: `@`, `\`, spaces, controls); `ServeMux` then strips a port with
/// `net.SplitHostPort`, which takes brackets off without checking what is inside, and
/// keeps the whole value when it fails (`a:80:80`).
pub fn go(host: &str) -> Option<String> {
    let valid = |b: u8| b.is_ascii_alphanumeric() || b"!$%&'()*+,-.:;=[]_~".contains(&b);
    if !host.bytes().all(valid) {
        return None;
    }
    if !host.contains(':') {
        return Some(host.to_lowercase());
    }
    Some(split_host_port(host).unwrap_or(host).to_lowercase())
}

/// `net.SplitHostPort`'s host, or `None` where it errs.
fn split_host_port(host: &str) -> Option<&str> {
    let i = host.rfind(':')?;
    if host.starts_with('[') {
        let end = host.find(']')?;
        if end + 1 != i {
            return None;
        }
        let inner = &host[1..end];
        if inner.contains(['[', ']']) {
            return None;
        }
        return Some(inner);
    }
    let name = &host[..i];
    if name.contains(':') || name.contains(['[', ']']) {
        return None;
    }
    Some(name)
}

/// Python's `urllib.parse.urlsplit("//" + host).hostname` (Starlette's `request.url`,
/// `aiohttp`, Flask's URL building): the netloc up to `/`, `?` or `#`; userinfo dropped at
/// the last `@`; a bracketed host taken between the brackets (Python before 3.11.4 does not
/// check it is an address); otherwise up to the first `:`; lower case.
pub fn python_urlsplit(host: &str) -> Option<String> {
    let trimmed: String = host
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let netloc = trimmed.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = netloc.rsplit_once('@').map_or(netloc, |(_, h)| h);
    let name = match host_port.split_once('[') {
        Some((_, rest)) => rest.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    Some(name.to_lowercase())
}

/// Django's `HttpRequest.get_host()` and `split_domain_port`: lower-cased, it must match
/// `^([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(:[0-9]+)?$` (else `DisallowedHost`, a 400);
/// a trailing dot is removed from the domain.
pub fn django(host: &str) -> Option<String> {
    let lower = host.to_lowercase();
    let (name, port) = if lower.starts_with('[') {
        let end = lower.find(']')?;
        let inner = &lower[1..end];
        let literal_ok = inner.contains(':')
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b));
        if !literal_ok {
            return None;
        }
        (lower[..=end].to_string(), &lower[end + 1..])
    } else {
        let (name, port) = match lower.find(':') {
            Some(i) => (&lower[..i], &lower[i..]),
            None => (lower.as_str(), ""),
        };
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-".contains(&b));
        if !name_ok {
            return None;
        }
        (name.to_string(), port)
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return None;
    }
    Some(name.strip_suffix('.').unwrap_or(&name).to_string())
}

/// Tomcat's `Host` parser (`HttpParser.readHostDomainName`/`readHostIPv6`) behind
/// `getServerName`: a domain of letters, digits, `-`, `.` and `_` or a valid IPv6 literal,
/// then an optional `:` and digits (empty allowed); anything else is a 400. Host mapping
/// ignores case.
pub fn tomcat(host: &str) -> Option<String> {
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        host[1..end].parse::<std::net::Ipv6Addr>().ok()?;
        let rest = &host[end + 1..];
        let port = match rest {
            "" => "",
            _ => rest.strip_prefix(':')?,
        };
        (host[..=end].to_lowercase(), port)
    } else {
        let (name, port) = host.split_once(':').unwrap_or((host, ""));
        let name_ok = !name.is_empty()
            && !name.starts_with(['.', '-'])
            && !name.contains("..")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !name_ok {
            return None;
        }
        (name.to_lowercase(), port)
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(name)
}

/// nginx's `ngx_http_validate_host` behind `$host` and `server_name`: lower-cased; `..`, `/`,
/// NUL, spaces and controls refused (400); the name ends at the first `:` outside brackets
/// (what follows is never checked) and one trailing dot is removed.
pub fn nginx(host: &str) -> Option<String> {
    let bytes = host.as_bytes();
    let mut end = bytes.len();
    let mut in_literal = false;
    let mut in_rest = false;
    let mut previous_dot = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'.' if previous_dot => return None,
            b':' if !in_rest && !in_literal => {
                end = i;
                in_rest = true;
            }
            b'[' if i == 0 => in_literal = true,
            b']' if in_literal && !in_rest => {
                end = i + 1;
                in_literal = false;
                in_rest = true;
            }
            b'/' | 0 => return None,
            b if b <= b' ' || b == 0x7f => return None,
            _ => {}
        }
        previous_dot = b == b'.';
    }
    let name = &host[..end];
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    Some(name.to_lowercase())
}
