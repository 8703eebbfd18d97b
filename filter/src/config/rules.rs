//! A rule's `match`: path, methods, hosts and route.

use super::read::{Field, Node};
use super::{ConfigError, err, fields};
use crate::http::authority;
use crate::http::path::{self, PathParameters};
use crate::policy::rules::{HostPattern, Matcher, PathMatch};
use crate::policy::template::Template;

pub(super) fn compile_match(node: &Node) -> Result<Matcher, ConfigError> {
    let [path, prefix, path_template, methods, hosts, route] = &node.fields(&fields::MATCH)?;
    let chosen = (
        path.get::<String>()?,
        prefix.get::<String>()?,
        path_template.get::<String>()?,
    );
    let (matched, field, written) = match chosen {
        (Some(p), None, None) => (PathMatch::Exact(p.clone()), path, p),
        (None, Some(p), None) => (PathMatch::Prefix(p.clone()), prefix, p),
        (None, None, Some(t)) => {
            let template =
                Template::parse(&t).or_else(|e| err(path_template.path(), e.message()))?;
            let sample = template.sample();
            (PathMatch::Template(template), path_template, sample)
        }
        _ => return node.exactly_one(&[path, prefix, path_template]),
    };
    canonical_path(&written, field.path())?;
    let method_names = non_empty_list(methods, "match any method")?;
    if let Some(i) = method_names
        .iter()
        .position(|x| x.is_empty() || !x.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return err(
            format!("{}[{i}]", methods.path()),
            "methods are upper-case names such as GET",
        );
    }
    let host_patterns = non_empty_list(hosts, "match any host")?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            host_pattern(h).ok_or_else(|| {
                ConfigError::new(
                    format!("{}[{i}]", hosts.path()),
                    "must be a host name such as api.example.com or *.example.com, with an optional :port",
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let routes = non_empty_list(route, "match any route")?;
    if let Some(i) = routes
        .iter()
        .position(|r| r.is_empty() || r.chars().any(char::is_control))
    {
        return err(
            format!("{}[{i}]", route.path()),
            "must be a non-empty route name",
        );
    }
    Ok(Matcher {
        path: matched,
        methods: method_names,
        hosts: host_patterns,
        routes,
    })
}

/// Paths in the configuration are written as the filter reads requests, without
/// parameters (`at` names the field).
pub(super) fn canonical_path(written: &str, at: String) -> Result<(), ConfigError> {
    match path::read(written, PathParameters::Reject) {
        Ok(readings) if readings.canonical.as_str() == written => Ok(()),
        Ok(readings) => err(
            at,
            format!(
                "is not normalised (requests would be matched as '{}')",
                readings.canonical.as_str()
            ),
        ),
        Err(e) => err(at, format!("is not a safe path: {}", e.message())),
    }
}

/// A list of strings that, when given, must not be empty (`without` says what leaving it
/// out means).
pub(super) fn non_empty_list(field: &Field, without: &str) -> Result<Vec<String>, ConfigError> {
    match field.get::<Vec<String>>()? {
        Some(list) if list.is_empty() => err(
            field.path(),
            format!("must not be empty (leave it out to {without})"),
        ),
        list => Ok(list.unwrap_or_default()),
    }
}

/// `api.example.com`, `*.example.com` or either with `:port`; names are lower-cased.
pub(super) fn host_pattern(text: &str) -> Option<HostPattern> {
    let lower = text.to_ascii_lowercase();
    let (name, port) = match lower.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (lower.as_str(), None),
    };
    // A port as a request's is read (`authority::port_number`): 1 to 65535.
    let port = match port {
        Some(digits) if digits.len() <= 5 => Some(authority::port_number(digits)?),
        Some(_) => return None,
        None => None,
    };
    let (wildcard, labels) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if labels.len() > 253 || !labels.split('.').all(label_ok) {
        return None;
    }
    Some(HostPattern {
        name: if wildcard {
            format!(".{labels}")
        } else {
            labels.to_string()
        },
        wildcard,
        port,
    })
}
