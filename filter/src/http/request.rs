//! The request as the core sees it: method, raw `:path` and headers with lower-case names
//! (as HTTP/2 and Envoy present them). Nothing here is trusted.
//!
//! Hosts hand over header values as bytes, which need not be UTF-8. A value that is not is
//! kept out of `headers` and its name recorded in `undecodable`, so that the authenticator
//! refuses requests where such a value matters and ignores it where it does not.
//!
//! Every name and value is held in one string (this is built for every request: one
//! allocation, not two per header).

use crate::http::spelling::{self, names, same_upstream_name};
use std::ops::Range;

#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Every name and value kept, back to back.
    text: String,
    /// Every header instance in arrival order, as ranges of `text`; names lower-case.
    headers: Vec<(Range<usize>, Range<usize>)>,
    method: Range<usize>,
    /// The raw `:path`, query included.
    path: Range<usize>,
    /// The lower-case names of header instances whose value is not UTF-8 (pseudo-headers
    /// included); those values are in neither `headers` nor `method`/`path`.
    pub undecodable: Vec<String>,
    /// The fields of a form-encoded body the filter read (`set_form_body`), in order.
    form: Vec<FormField>,
}

/// One `name=value` of a form-encoded body: the value percent-decoded (`+` is a space), and
/// the field's raw text, kept to rebuild the body without it and to read its name.
#[derive(Debug, Clone)]
struct FormField {
    value: Range<usize>,
    raw: Range<usize>,
}

impl Request {
    pub fn new(method: &str, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut request = Request::default();
        request.method = request.push(method);
        request.path = request.push(path);
        for (name, value) in headers {
            request.push_header(name, value);
        }
        request
    }

    /// The request from the host's header pairs. A pair whose name is not UTF-8 is dropped:
    /// every name the filter reads or writes is ASCII, so it can equal none of them.
    pub fn from_pairs(pairs: &[(&[u8], &[u8])]) -> Self {
        // Sized once: growing the text header by header costs more than the rest of a
        // missing-token decision.
        let mut request = Request {
            text: String::with_capacity(pairs.iter().map(|(n, v)| n.len() + v.len()).sum()),
            headers: Vec::with_capacity(pairs.len()),
            ..Request::default()
        };
        for &(name, value) in pairs {
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            let Ok(value) = std::str::from_utf8(value) else {
                request.undecodable.push(name.to_ascii_lowercase());
                continue;
            };
            let (name, value) = request.push_header(name, value);
            match request.text.get(name) {
                Some(":method") => request.method = value,
                Some(":path") => request.path = value,
                _ => {}
            }
        }
        request
    }

    fn push(&mut self, text: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(text);
        start..self.text.len()
    }

    /// Adds a header instance (its name lower-cased); returns where name and value are.
    fn push_header(&mut self, name: &str, value: &str) -> (Range<usize>, Range<usize>) {
        let name = self.push(name);
        if let Some(pushed) = self.text.get_mut(name.clone()) {
            pushed.make_ascii_lowercase();
        }
        let value = self.push(value);
        self.headers.push((name.clone(), value.clone()));
        (name, value)
    }

    fn at(&self, range: &Range<usize>) -> &str {
        self.text.get(range.clone()).unwrap_or_default()
    }

    pub fn method(&self) -> &str {
        self.at(&self.method)
    }

    /// The raw `:path`, query included.
    pub fn path(&self) -> &str {
        self.at(&self.path)
    }

    /// Every header instance in arrival order (names lower-case).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|(name, value)| (self.at(name), self.at(value)))
    }

    /// All values of header `name` (lower-case), in order.
    pub fn header_values<'a: 'n, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + 'n {
        self.headers
            .iter()
            .filter(move |(k, _)| k.len() == name.len() && self.at(k) == name)
            .map(|(_, v)| self.at(v))
    }

    /// Every instance of header `name` (lower-case) under every spelling an upstream reads
    /// as that name (`same_upstream_name`: `x_api_token` for `x-api-token`), with the name
    /// it came under, in order. Pseudo-headers only as they are.
    pub fn header_spellings<'a: 'n, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'n {
        // Names of another length are passed over before their text is read.
        self.headers
            .iter()
            .filter(move |(k, _)| k.len() == name.len())
            .map(|(k, v)| (self.at(k), self.at(v)))
            .filter(move |(k, _)| *k == name || same_upstream_name(k, name))
    }

    /// Whether the request carries header `name` (lower-case), decodable or not.
    pub fn has_header(&self, name: &str) -> bool {
        self.header_values(name).next().is_some() || self.undecodable.iter().any(|h| h == name)
    }

    /// The query string without the leading `?`, if any.
    pub fn query(&self) -> Option<&str> {
        let path = self.path();
        let path = path.split_once('#').map_or(path, |(path, _)| path);
        path.split_once('?').map(|(_, q)| q)
    }

    /// Reads `body` as `application/x-www-form-urlencoded` fields. Bytes that do not decode
    /// to UTF-8 become U+FFFD, which no token contains: such a token is malformed, never
    /// silently absent.
    pub fn set_form_body(&mut self, body: &[u8]) {
        for raw in body.split(|b| *b == b'&').filter(|f| !f.is_empty()) {
            let start = self.text.len();
            self.text.push_str(&String::from_utf8_lossy(raw));
            let raw_range = start..self.text.len();
            let value = raw
                .iter()
                .position(|b| *b == b'=')
                .and_then(|i| raw.get(i + 1..))
                .unwrap_or_default();
            let value = self.push(&form_decode(value));
            self.form.push(FormField {
                value,
                raw: raw_range,
            });
        }
    }

    /// The decoded values of the form fields whose name reads as `name` in some common
    /// stack (`spelling::names`, on the name as sent), in order (none without a form body).
    pub fn form_values<'a: 'n, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n {
        self.form
            .iter()
            .filter(move |f| names(self.raw_name(f), name))
            .map(|f| self.at(&f.value))
    }

    /// A form field's name as sent (before decoding).
    fn raw_name(&self, field: &FormField) -> &str {
        let raw = self.at(&field.raw);
        raw.split_once('=').map_or(raw, |(name, _)| name)
    }

    /// The form body without the fields whose name reads as `name`, each other field as
    /// it came.
    pub fn form_without(&self, name: &str) -> String {
        let kept: Vec<&str> = self
            .form
            .iter()
            .filter(|f| !names(self.raw_name(f), name))
            .map(|f| self.at(&f.raw))
            .collect();
        kept.join("&")
    }
}

/// A form component decoded (`spelling::form_decode`); bytes that are not UTF-8 become
/// U+FFFD, so a token with them is malformed, never silently something else.
fn form_decode(raw: &[u8]) -> String {
    String::from_utf8_lossy(&spelling::form_decode(raw)).into_owned()
}

/// Headers through which frameworks let a client replace the method (Express's
/// method-override, Rails, Symfony, Laravel, ASP.NET, OData).
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The lengths of `METHOD_OVERRIDE_HEADERS`' names, as bits.
const OVERRIDE_LENGTHS: u64 = {
    let mut bits = 0u64;
    let mut names: &[&str] = &METHOD_OVERRIDE_HEADERS;
    while let [name, rest @ ..] = names {
        bits |= spelling::length_bit(name.len());
        names = rest;
    }
    bits
};

/// Whether a request header is a method override under some spelling an upstream reads
/// as one (`x_http_method_override` is `HTTP_X_HTTP_METHOD_OVERRIDE` to CGI stacks).
#[inline]
pub fn is_method_override(name: &str) -> bool {
    // Most names do not start with `x` or have none of their lengths (one bit test); the
    // request's names are lower case already.
    name.starts_with('x')
        && OVERRIDE_LENGTHS & spelling::length_bit(name.len()) != 0
        && METHOD_OVERRIDE_HEADERS
            .iter()
            .any(|h| h.len() == name.len() && same_upstream_name(h, name))
}

/// Header changes to apply to a request that goes upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderChanges {
    /// Header names to remove (every instance), applied first.
    pub remove: Vec<String>,
    /// Headers to set (replacing any instance), applied after `remove`.
    pub set: Vec<(String, String)>,
    /// Stream properties to set (Envoy keeps them as filter state `wasm.<name>`).
    pub properties: Vec<(String, String)>,
    /// The request body to send instead of the one received (a form body without its
    /// token); `content-length`, if the request has one, is among `set`.
    pub body: Option<String>,
    /// Headers to add to the response the upstream sends back (a fresh `DPoP-Nonce`).
    pub response: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_overrides_are_read_under_every_spelling() {
        // `is_method_override` passes over names that do not start with `x`.
        assert!(METHOD_OVERRIDE_HEADERS.iter().all(|h| h.starts_with('x')));
        for name in METHOD_OVERRIDE_HEADERS {
            assert!(is_method_override(name));
            assert!(is_method_override(&name.replace('-', "_")));
        }
        for name in [
            "x-http-methods",
            "x-forwarded-proto",
            "http-method",
            "authorization",
        ] {
            assert!(!is_method_override(name), "{name}");
        }
    }

    #[test]
    fn values_that_are_not_utf8_are_named_not_kept() {
        let pairs: [(&[u8], &[u8]); 6] = [
            (b":method", b"GET"),
            (b":path", b"/a\xff"),
            (b"X-Foo", b"\xc3\x28"),
            (b"\xff-name", b"kept out"),
            (b"Accept", b"*/*"),
            (b"x-foo", b"ok"),
        ];
        let request = Request::from_pairs(&pairs);
        assert_eq!(request.method(), "GET");
        assert_eq!(request.path(), "");
        assert_eq!(request.undecodable, [":path", "x-foo"]);
        assert_eq!(
            request.headers().collect::<Vec<_>>(),
            [(":method", "GET"), ("accept", "*/*"), ("x-foo", "ok")]
        );
        assert!(request.has_header("x-foo") && request.has_header(":path"));
        assert!(!request.has_header("x-bar"));
    }
}
