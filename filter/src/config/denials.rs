//! `denials`: answers of the operator's own shape (`policy::denials`), and the names of the
//! properties that say why a request was refused or who let it through.

use super::read::{Field, FromJson, Node};
use super::{ConfigError, err, fields};
use crate::policy::denials::{Denials, Format, Kind, Part, Shape, Template, Value, placeholders};

impl FromJson<'_> for Format {
    fn from_json(node: &Node) -> Result<Self, ConfigError> {
        node.variant(&[
            ("json", Format::Json),
            ("problem+json", Format::Problem),
            ("html", Format::Html),
            ("text", Format::Text),
        ])
    }
}

/// Headers `denials.headers` may not set: those the filter sets on a denial, those the
/// host makes of its status and body, and hop-by-hop ones.
const RESERVED: [&str; 17] = [
    "content-type",
    "content-length",
    "cache-control",
    "www-authenticate",
    "dpop-nonce",
    "retry-after",
    "location",
    "accept-encoding",
    "grpc-status",
    "grpc-message",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "keep-alive",
    "trailer",
    "proxy-connection",
];

/// `denials`; `keep_query`: whether a redirect's original URL may keep its query (no
/// provider reads tokens from the query).
#[inline(never)]
pub(super) fn compile_denials(node: &Node, keep_query: bool) -> Result<Denials, ConfigError> {
    let [format, template, headers, redirect, kinds] = &node.fields(&fields::DENIALS)?;
    let top: Format = format.or_default()?;
    let mut denials = Denials {
        default: Shape {
            status: None,
            body: Some(body(top, template)?),
            headers: extra_headers(headers)?,
        },
        kinds: Vec::new(),
        redirect: match redirect.get::<String>()? {
            Some(url) => Some(compile_redirect(&url, &redirect.path())?),
            None => None,
        },
        keep_query,
    };
    if let Some(listed) = kinds.get::<Node>()? {
        for (field, kind) in listed.fields(&fields::DENIAL_KINDS)?.iter().zip(Kind::ALL) {
            let own = match field.get::<Node>()? {
                Some(node) => Some(compile_kind(kind, top, &node)?),
                None => None,
            };
            denials.kinds.push(own);
        }
    }
    Ok(denials)
}

/// `denials.kinds.<kind>`: what differs from the top level, whose format is `top`.
fn compile_kind(kind: Kind, top: Format, node: &Node) -> Result<Shape, ConfigError> {
    let [status, format, template, headers] = &node.fields(&fields::DENIAL)?;
    let status = match status.get::<u64>()? {
        None => None,
        Some(given) => match kind.statuses().iter().find(|s| u64::from(**s) == given) {
            Some(allowed) => Some(*allowed),
            None => {
                return err(
                    status.path(),
                    "must be the kind's own status (access_denied alone may be 404): docs/denials.md",
                );
            }
        },
    };
    let body = match format.has() || template.has() {
        true => Some(body(format.get()?.unwrap_or(top), template)?),
        false => None,
    };
    Ok(Shape {
        status,
        body,
        headers: extra_headers(headers)?,
    })
}

/// The body of `format`, with `template` if given: `None` for the Express JSON.
fn body(format: Format, template: &Field) -> Result<Option<Template>, ConfigError> {
    match (template.get::<String>()?, format) {
        (Some(text), _) => Template::parse(&text, format)
            .map(Some)
            .or_else(|why| err(template.path(), why)),
        (None, Format::Json) => Ok(None),
        (None, Format::Problem) => Ok(Some(Template::problem())),
        (None, Format::Html | Format::Text) => {
            err(template.path(), "is required with format html or text")
        }
    }
}

/// `headers`: none the filter or the host sets, values printable ASCII (no CR or LF).
fn extra_headers(field: &Field) -> Result<Vec<(String, String)>, ConfigError> {
    match field.get::<Node>()? {
        None => Ok(Vec::new()),
        Some(listed) => listed.header_map(
            &RESERVED,
            "must be a header name the filter and the host do not set (content-type, cache-control, www-authenticate, location, hop-by-hop, ...)",
            16,
            1024,
        ),
    }
}

/// `denials.redirect`: the `Location`, `{url}` its one placeholder.
fn compile_redirect(url: &str, path: &str) -> Result<Vec<Part>, ConfigError> {
    let absolute = url.starts_with("https://") || url.starts_with("http://");
    let relative = url.starts_with('/') && !url.starts_with("//");
    if !(absolute || relative) || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return err(
            path,
            "must be an absolute http(s) URL or a path (not //), printable ASCII without spaces",
        );
    }
    placeholders(url, &[Value::Url]).or_else(|why| err(path, why))
}

/// A stream property's name (`failure_property`, `provider_property`,
/// `claim_to_properties`): 1 to 64 letters, digits, `_`, `-` or `.`.
pub(super) fn is_property_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// An optional property-name field.
pub(super) fn property(field: &Field) -> Result<Option<String>, ConfigError> {
    match field.get::<String>()? {
        Some(name) if !is_property_name(&name) => err(
            field.path(),
            "must be 1 to 64 letters, digits, '_', '-' or '.'",
        ),
        name => Ok(name),
    }
}

#[cfg(test)]
mod tests;
