//! Denials of the operator's own shape (`denials` in the configuration): for each kind of
//! refusal, a status within what the standards allow, a body (the Express JSON of
//! `response::deny`, RFC 9457 `problem+json`, or a template with a few placeholders), extra
//! headers, and for a browser's page request a redirect to a login page.
//!
//! What no configuration changes: the `WWW-Authenticate` challenge (RFC 6750, RFC 9449),
//! `Retry-After` and the 503 of a refusal for keys that are not available, the 401 of every
//! refusal that challenges, and the answer to a gRPC call (its gRPC status and message).
//! Every value put into a body is escaped for the body's content type (JSON, HTML, or
//! control characters dropped), and none carries token or key material: the error code, the
//! description (fixed text and claim names), the realm, the status and `x-request-id`.

use crate::http::request::Request;
use crate::policy::response::{Failure, Reply};

/// The kinds of refusal `denials.kinds` names, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    Invalid,
    Expired,
    InsufficientScope,
    InvalidRequest,
    Unavailable,
    AccessDenied,
    InvalidDpopProof,
    BodyTooLarge,
    BodyTimeout,
    EncodedBody,
    InsufficientUserAuthentication,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Missing,
        Kind::Invalid,
        Kind::Expired,
        Kind::InsufficientScope,
        Kind::InvalidRequest,
        Kind::Unavailable,
        Kind::AccessDenied,
        Kind::InvalidDpopProof,
        Kind::BodyTooLarge,
        Kind::BodyTimeout,
        Kind::EncodedBody,
        Kind::InsufficientUserAuthentication,
    ];

    /// Its name in the configuration (`denials.kinds.<name>`, `denials.redirect.kinds`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Invalid => "invalid",
            Kind::Expired => "expired",
            Kind::InsufficientScope => "insufficient_scope",
            Kind::InvalidRequest => "invalid_request",
            Kind::Unavailable => "unavailable",
            Kind::AccessDenied => "access_denied",
            Kind::InvalidDpopProof => "invalid_dpop_proof",
            Kind::BodyTooLarge => "body_too_large",
            Kind::BodyTimeout => "body_timeout",
            Kind::EncodedBody => "encoded_body",
            Kind::InsufficientUserAuthentication => "insufficient_user_authentication",
        }
    }

    /// The kind of a refusal for `failure` (a full DPoP replay cache is `unavailable`, as
    /// its metric).
    pub fn of(failure: &Failure) -> Kind {
        match failure {
            Failure::Missing => Kind::Missing,
            Failure::InvalidToken { expired: true, .. } => Kind::Expired,
            Failure::InvalidToken { .. } | Failure::Revoked => Kind::Invalid,
            Failure::InsufficientScope { .. } => Kind::InsufficientScope,
            Failure::InvalidRequest(_) => Kind::InvalidRequest,
            Failure::Unavailable { .. }
            | Failure::ReplayCacheFull { .. }
            | Failure::RevocationUnavailable { .. } => Kind::Unavailable,
            Failure::AccessDenied => Kind::AccessDenied,
            Failure::InvalidDpopProof(_) | Failure::UseDpopNonce { .. } => Kind::InvalidDpopProof,
            Failure::BodyTooLarge => Kind::BodyTooLarge,
            Failure::BodyTimeout => Kind::BodyTimeout,
            Failure::EncodedBody => Kind::EncodedBody,
            Failure::InsufficientUserAuthentication { .. } => Kind::InsufficientUserAuthentication,
        }
    }

    /// The statuses this kind may be answered with, its own first. Only `access_denied`
    /// has a choice: 404 hides that the resource exists (RFC 9110 section 15.5.4), and it
    /// carries no challenge that would say otherwise. A 401 is what makes a client
    /// authenticate again (RFC 7235 section 3.1) and comes with the challenge; RFC 6750
    /// asks 403 for `insufficient_scope` and 400 for `invalid_request`; 408, 413 and 415
    /// tell the client what to change; a 503 with `Retry-After` is what clients and proxies
    /// retry.
    pub fn statuses(self) -> &'static [u16] {
        match self {
            Kind::Missing
            | Kind::Invalid
            | Kind::Expired
            | Kind::InvalidDpopProof
            | Kind::InsufficientUserAuthentication => &[401],
            Kind::InsufficientScope => &[403],
            Kind::AccessDenied => &[403, 404],
            Kind::InvalidRequest => &[400],
            Kind::Unavailable => &[503],
            Kind::BodyTooLarge => &[413],
            Kind::BodyTimeout => &[408],
            Kind::EncodedBody => &[415],
        }
    }

    /// Whether a browser's page request refused for this kind may be redirected to log in
    /// (a new login helps only a token that is missing, invalid or expired; a missing scope
    /// would loop, a DPoP client is no browser, and a step-up needs the `acr_values` and
    /// `max_age` of the challenge, which a login URL of the configuration does not carry).
    pub fn may_redirect(self) -> bool {
        matches!(self, Kind::Missing | Kind::Invalid | Kind::Expired)
    }
}

/// What a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// The error code (`invalid_token`, `unauthorized`, ...).
    Error,
    /// The description (the JSON body's `message`).
    Description,
    Realm,
    /// The request's `x-request-id` (at most `MAX_REQUEST_ID` bytes, else empty).
    RequestId,
    /// The status of the answer.
    Status,
    /// In the `problem+json` body only: the status's phrase.
    Title,
    /// In a redirect's URL only: the original URL, percent-encoded.
    Url,
}

/// The placeholders, as written.
const PLACEHOLDERS: [(&str, Value); 7] = [
    ("error", Value::Error),
    ("description", Value::Description),
    ("realm", Value::Realm),
    ("request_id", Value::RequestId),
    ("status", Value::Status),
    ("title", Value::Title),
    ("url", Value::Url),
];

/// The placeholders of a body template.
pub const BODY_VALUES: [Value; 5] = [
    Value::Error,
    Value::Description,
    Value::Realm,
    Value::RequestId,
    Value::Status,
];

/// Longest template and redirect URL, and most placeholders in one, so that an answer
/// stays small.
pub const MAX_TEMPLATE_BYTES: usize = 4096;
pub const MAX_PLACEHOLDERS: usize = 16;
/// Longest `x-request-id` put into a body; a longer one is left out.
pub const MAX_REQUEST_ID: usize = 128;

/// The RFC 9457 document (`format: problem+json`): `type` `about:blank`, `title` the
/// status's phrase, `status`, `detail` (the description) and the extension member `error`.
const PROBLEM: &str = r#"{"type":"about:blank","title":"{title}","status":{status},"detail":"{description}","error":"{error}"}"#;

/// A piece of a template: text as written, or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Value(Value),
}

/// Splits `text` into text and placeholders: `{name}` with a name of lower-case letters and
/// `_` is a placeholder and must be one of `allowed`; any other `{` is text (JSON's braces,
/// CSS). Errors say what is wrong.
pub fn placeholders(text: &str, allowed: &[Value]) -> Result<Vec<Part>, String> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err("longer than 4096 bytes".into());
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some((before, after)) = rest.split_once('{') {
        literal.push_str(before);
        let length = after
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
            .count();
        let name = after.get(..length).unwrap_or_default();
        if length == 0 || after.as_bytes().get(length) != Some(&b'}') {
            literal.push('{');
            rest = after;
            continue;
        }
        let Some(value) = PLACEHOLDERS
            .iter()
            .find(|(n, v)| *n == name && allowed.contains(v))
            .map(|(_, v)| *v)
        else {
            return Err(format!("unknown placeholder {{{name}}}"));
        };
        if !literal.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut literal)));
        }
        parts.push(Part::Value(value));
        rest = after.get(length + 1..).unwrap_or_default();
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    if parts.iter().filter(|p| matches!(p, Part::Value(_))).count() > MAX_PLACEHOLDERS {
        return Err("more than 16 placeholders".into());
    }
    Ok(parts)
}

/// The bodies a denial may have: each its content type, its escaping, and (but for `html`
/// and `text`, which need a template) a body of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: the Express JSON of `response::deny` unless a template replaces
    /// it. Values are escaped as a JSON string's characters, exactly as serde_json writes
    /// them (a template puts its placeholders between quotes).
    Json,
    /// `application/problem+json`: RFC 9457 (`PROBLEM`) unless a template replaces it.
    /// Escaped as JSON.
    Problem,
    /// `text/html; charset=utf-8`, a template only: `& < > " '` as entities, control
    /// characters dropped.
    Html,
    /// `text/plain; charset=utf-8`, a template only: control characters dropped.
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Problem => "application/problem+json",
            Format::Html => "text/html; charset=utf-8",
            Format::Text => "text/plain; charset=utf-8",
        }
    }
}

/// Appends `text` to `out`, escaped for a body of `format`.
pub fn escape_into(out: &mut String, text: &str, format: Format) {
    let json = matches!(format, Format::Json | Format::Problem);
    for c in text.chars() {
        let replacement = match (json, format, c) {
            (true, _, '"') => "\\\"",
            (true, _, '\\') => "\\\\",
            (true, _, '\n') => "\\n",
            (true, _, '\r') => "\\r",
            (true, _, '\t') => "\\t",
            (true, _, '\u{8}') => "\\b",
            (true, _, '\u{c}') => "\\f",
            (true, _, c) if c < ' ' => {
                out.push_str("\\u00");
                let code = c as u32;
                for digit in [code >> 4, code & 0xf] {
                    out.extend(char::from_digit(digit, 16));
                }
                continue;
            }
            (true, _, c) => {
                out.push(c);
                continue;
            }
            (false, Format::Html, '&') => "&amp;",
            (false, Format::Html, '<') => "&lt;",
            (false, Format::Html, '>') => "&gt;",
            (false, Format::Html, '"') => "&quot;",
            (false, Format::Html, '\'') => "&#39;",
            (false, _, c) if c.is_control() => "",
            (false, _, c) => {
                out.push(c);
                continue;
            }
        };
        out.push_str(replacement);
    }
}

/// A body of one format: its text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    pub format: Format,
}

impl Template {
    /// A template for a body of `format`. A JSON one must be JSON once its placeholders
    /// are filled (checked here with sample values), so that each sits inside a string
    /// or, for `{status}`, where a number may.
    pub fn parse(text: &str, format: Format) -> Result<Template, String> {
        let template = Template {
            parts: placeholders(text, &BODY_VALUES)?,
            format,
        };
        if matches!(format, Format::Json | Format::Problem) {
            let sample = Values {
                error: "invalid_token",
                description: "a \"sample\" description",
                realm: "api",
                request_id: "id",
                status: 401,
                url: "",
            };
            crate::jose::json::parse(template.render(&sample).as_bytes()).map_err(|_| {
                "not JSON once its placeholders are filled: put each placeholder but {status} inside a string".to_string()
            })?;
        }
        Ok(template)
    }

    /// The RFC 9457 body (`format: problem+json` without a template).
    pub fn problem() -> Template {
        let values = [
            Value::Title,
            Value::Status,
            Value::Description,
            Value::Error,
        ];
        Template {
            parts: placeholders(PROBLEM, &values).unwrap_or_default(),
            format: Format::Problem,
        }
    }

    fn render(&self, values: &Values) -> String {
        render(&self.parts, values, self.format)
    }
}

/// The values placeholders stand for, in one answer.
struct Values<'a> {
    error: &'a str,
    description: &'a str,
    realm: &'a str,
    request_id: &'a str,
    status: u16,
    url: &'a str,
}

fn render(parts: &[Part], values: &Values, format: Format) -> String {
    let mut out = String::with_capacity(256);
    for part in parts {
        let value = match part {
            Part::Text(text) => {
                out.push_str(text);
                continue;
            }
            Part::Value(Value::Status) => {
                out.push_str(&u64::from(values.status).to_string());
                continue;
            }
            Part::Value(Value::Url) => {
                percent_encode_into(&mut out, values.url);
                continue;
            }
            Part::Value(Value::Title) => title(values.status),
            Part::Value(Value::Error) => values.error,
            Part::Value(Value::Description) => values.description,
            Part::Value(Value::Realm) => values.realm,
            Part::Value(Value::RequestId) => values.request_id,
        };
        escape_into(&mut out, value, format);
    }
    out
}

/// RFC 3986: every byte but the unreserved characters as `%XX`, as a URL's query value
/// must be.
fn percent_encode_into(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            for digit in [b >> 4, b & 0xf] {
                out.extend(char::from_digit(u32::from(digit), 16).map(|c| c.to_ascii_uppercase()));
            }
        }
    }
}

/// The phrase of each status a denial may have (RFC 9110), RFC 9457's `title` for
/// `about:blank`.
fn title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// How one kind of refusal (or, at the top, every kind) is answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// A status instead of the kind's own (one of `Kind::statuses`; never at the top).
    pub status: Option<u16>,
    /// The body: `Some(None)` the Express JSON of `response::deny`; `None` (a kind's only)
    /// the top level's.
    pub body: Option<Option<Template>>,
    /// Extra headers; a kind's replace the top level's of the same name.
    pub headers: Vec<(String, String)>,
}

/// The `denials` configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Denials {
    /// What every kind gets unless its own says otherwise.
    pub default: Shape,
    /// Each kind's own, in `Kind::ALL` order (empty: none given).
    pub kinds: Vec<Option<Shape>>,
    /// The `Location` of a redirect to log in, for a browser's page request refused for a
    /// kind that `may_redirect`: its `{url}` is the original URL percent-encoded.
    pub redirect: Option<Vec<Part>>,
    /// Whether the original URL in a redirect keeps its query: not when some provider reads
    /// tokens from the query (a token never goes into a `Location`).
    pub keep_query: bool,
}

impl Denials {
    /// Gives `reply`, the standard answer to a refusal for `failure` on `req`, the
    /// configured shape. A gRPC call keeps its answer; the challenge and `Retry-After` are
    /// kept whatever the body.
    pub fn shape(&self, reply: &mut Reply, failure: &Failure, realm: &str, req: &Request) {
        if reply.grpc_status.is_some() {
            return;
        }
        let kind = Kind::of(failure);
        let own = self.kinds.get(kind as usize).and_then(Option::as_ref);
        let (error, description) = failure.error_and_message();
        let mut values = Values {
            error,
            description: &description,
            realm,
            request_id: "",
            status: own.and_then(|s| s.status).unwrap_or(reply.status),
            url: "",
        };
        let redirect = self
            .redirect
            .as_ref()
            .filter(|_| kind.may_redirect() && wants_page(req));
        if let Some(redirect) = redirect {
            let url = original_url(req, self.keep_query);
            values.url = &url;
            reply.status = 302;
            reply.body.clear();
            reply
                .headers
                .retain(|(n, _)| n == "www-authenticate" || n == "cache-control");
            let location = render(redirect, &values, Format::Text);
            reply.headers.push(("location".into(), location));
        } else {
            reply.status = values.status;
            let body = own
                .and_then(|s| s.body.as_ref())
                .or(self.default.body.as_ref());
            if let Some(Some(template)) = body {
                values.request_id = req
                    .header_values("x-request-id")
                    .next()
                    .filter(|id| id.len() <= MAX_REQUEST_ID)
                    .unwrap_or_default();
                reply.body = template.render(&values);
                for (name, value) in &mut reply.headers {
                    if name == "content-type" {
                        *value = template.format.content_type().into();
                    }
                }
            }
        }
        let own_headers = own.map(|s| s.headers.as_slice()).unwrap_or_default();
        let inherited =
            (self.default.headers.iter()).filter(|(n, _)| !own_headers.iter().any(|(o, _)| o == n));
        for (name, value) in inherited.chain(own_headers) {
            reply.headers.push((name.clone().into(), value.clone()));
        }
    }
}

/// Whether `req` is a browser's page request: `GET` or `HEAD` whose `Accept` names
/// `text/html`.
fn wants_page(req: &Request) -> bool {
    matches!(req.method(), "GET" | "HEAD")
        && (req
            .header_values("accept")
            .flat_map(|v| v.split([',', ';'])))
        .any(|range| range.trim().eq_ignore_ascii_case("text/html"))
}

/// The URL the request was for: scheme, authority and path, without the query unless
/// `keep_query`.
fn original_url(req: &Request, keep_query: bool) -> String {
    let first = |name: &str| req.header_values(name).next();
    let path = req.path();
    let path = match keep_query {
        true => path,
        false => path.split('?').next().unwrap_or_default(),
    };
    let mut url = String::with_capacity(64 + path.len());
    for part in [
        first(":scheme").unwrap_or("https"),
        "://",
        first(":authority")
            .or_else(|| first("host"))
            .unwrap_or_default(),
        path,
    ] {
        url.push_str(part);
    }
    url
}

/// The filter-state record of a refusal (`failure_property`): JSON with the reason (the
/// metric label), the error code, the description, the status answered and the provider.
pub fn failure_record(failure: &Failure, status: u16, provider: Option<&str>) -> String {
    let (error, message) = failure.error_and_message();
    let mut out = String::with_capacity(96 + message.len());
    for part in [
        r#"{"reason":""#,
        failure.reason().as_str(),
        r#"","error":""#,
        error,
        r#"","message":""#,
    ] {
        out.push_str(part);
    }
    escape_into(&mut out, &message, Format::Json);
    out.push_str(r#"","status":"#);
    out.push_str(&u64::from(status).to_string());
    if let Some(provider) = provider {
        out.push_str(r#","provider":""#);
        escape_into(&mut out, provider, Format::Json);
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests;
