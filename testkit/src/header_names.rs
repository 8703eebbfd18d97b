//! How upstream stacks read a request header's name: the key under which an application
//! finds it. Two spellings with one key are one header to that stack, whatever the proxy
//! thinks; `None` means the stack drops the header before the application sees it.
//!
//! The models follow each stack's documented (or source-visible) behaviour:
//! - CGI/WSGI (RFC 3875 section 4.1.18; uWSGI, gunicorn before 22, Rack, PHP-FPM through
//!   FastCGI): `HTTP_` + the name upper-cased with `-` as `_`, so `X-User-Id` and
//!   `X_User_Id` are both `HTTP_X_USER_ID`.
//! - Apache httpd 2.2 (`http2env`) and PHP's variable-name mangling (`.` and space become
//!   `_` in `$_SERVER` keys): every byte other than a letter or digit becomes `_`.
//! - Node/Express: names lower-cased, otherwise exact.
//! - Go `net/http` (`textproto.CanonicalMIMEHeaderKey`): letters after `-` upper-cased, the
//!   rest lower; `_` is not folded (`X_user_id` stays apart from `X-User-Id`).
//! - Java servlets (`HttpServletRequest.getHeader`): case-insensitive, otherwise exact.
//! - nginx `$http_<name>`: lower-cased, `-` as `_`; names with `_` are dropped unless
//!   `underscores_in_headers on`, and names with other symbols are dropped unless
//!   `ignore_invalid_headers off`.

/// One upstream stack: its name and how it keys a header name.
pub struct Stack {
    pub name: &'static str,
    pub key: fn(&str) -> Option<String>,
}

fn cgi(name: &str) -> Option<String> {
    let upper: String = name
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    Some(format!("HTTP_{upper}"))
}

/// The variable Apache 2.2 and PHP make of a header name (every symbol as `_`): the widest
/// folding of the stacks here, which the other models of CGI-style stacks use too.
pub fn cgi_variable(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("HTTP_{upper}")
}

fn apache22_php(name: &str) -> Option<String> {
    Some(cgi_variable(name))
}

fn node(name: &str) -> Option<String> {
    Some(name.to_ascii_lowercase())
}

fn go(name: &str) -> Option<String> {
    // Names with bytes outside tokens are left as they are; the rest canonicalised.
    let mut upper = true;
    Some(
        name.chars()
            .map(|c| {
                let out = if upper {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                };
                upper = c == '-';
                out
            })
            .collect(),
    )
}

fn servlet(name: &str) -> Option<String> {
    Some(name.to_ascii_lowercase())
}

fn nginx(name: &str, underscores: bool, invalid: bool) -> Option<String> {
    let mut key = String::from("http_");
    for c in name.chars() {
        match c {
            '-' => key.push('_'),
            '_' if underscores => key.push('_'),
            c if c.is_ascii_alphanumeric() => key.push(c.to_ascii_lowercase()),
            c if invalid => key.push(c.to_ascii_lowercase()),
            _ => return None,
        }
    }
    Some(key)
}

/// Every modelled stack.
pub const STACKS: [Stack; 9] = [
    Stack {
        name: "CGI/WSGI/Rack (HTTP_X_USER_ID)",
        key: cgi,
    },
    Stack {
        name: "Apache 2.2 / PHP $_SERVER (every symbol as _)",
        key: apache22_php,
    },
    Stack {
        name: "Node/Express (lower-case)",
        key: node,
    },
    Stack {
        name: "Go net/http (canonical MIME key)",
        key: go,
    },
    Stack {
        name: "Java servlet (case-insensitive)",
        key: servlet,
    },
    Stack {
        name: "nginx default ($http_x_user_id)",
        key: |n| nginx(n, false, false),
    },
    Stack {
        name: "nginx underscores_in_headers on",
        key: |n| nginx(n, true, false),
    },
    Stack {
        name: "nginx underscores_in_headers on, ignore_invalid_headers off",
        key: |n| nginx(n, true, true),
    },
    Stack {
        name: "PHP-FPM behind nginx, ignore_invalid_headers off (. as _)",
        key: |n| nginx(n, true, true).map(|k| k.replace(['.', ' ', '['], "_")),
    },
];

/// A request's headers after the filter's removals and sets, as Envoy applies them: a
/// removal drops every instance of that name (any case), a set replaces every instance.
pub fn forwarded(
    headers: &[(String, String)],
    remove: &[String],
    set: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| !remove.iter().any(|r| r.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    for (name, value) in set {
        out.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        out.push((name.clone(), value.clone()));
    }
    out
}

/// The values `stack` reads under `identity`'s key from `headers`, in order.
pub fn reads<'h>(stack: &Stack, headers: &'h [(String, String)], identity: &str) -> Vec<&'h str> {
    let Some(wanted) = (stack.key)(identity) else {
        return Vec::new();
    };
    headers
        .iter()
        .filter(|(n, _)| (stack.key)(n).as_deref() == Some(wanted.as_str()))
        .map(|(_, v)| v.as_str())
        .collect()
}
