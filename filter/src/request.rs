//! The request as the core sees it: method, raw `:path` and headers with lower-case names
//! (as HTTP/2 and Envoy present them). Nothing here is trusted.
//!
//! Hosts hand over header values as bytes, which need not be UTF-8. A value that is not is
//! kept out of `headers` and its name recorded in `undecodable`, so that the authenticator
//! refuses requests where such a value matters and ignores it where it does not.

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// The raw `:path`, query included.
    pub path: String,
    /// Every header instance in arrival order; names lower-case.
    pub headers: Vec<(String, String)>,
    /// The lower-case names of header instances whose value is not UTF-8 (pseudo-headers
    /// included); those values are in neither `headers` nor `method`/`path`.
    pub undecodable: Vec<String>,
}

impl Request {
    pub fn new(method: &str, path: &str, headers: &[(&str, &str)]) -> Self {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
            undecodable: Vec::new(),
        }
    }

    /// The request from the host's header pairs. A pair whose name is not UTF-8 is dropped:
    /// every name the filter reads or writes is ASCII, so it can equal none of them.
    pub fn from_pairs<'b>(pairs: impl IntoIterator<Item = (&'b [u8], &'b [u8])>) -> Self {
        let mut request = Request::default();
        for (name, value) in pairs {
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            let Ok(value) = std::str::from_utf8(value) else {
                request.undecodable.push(name);
                continue;
            };
            match name.as_str() {
                ":method" => request.method = value.to_string(),
                ":path" => request.path = value.to_string(),
                _ => {}
            }
            request.headers.push((name, value.to_string()));
        }
        request
    }

    /// All values of header `name` (lower-case), in order.
    pub fn header_values<'a: 'n, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + 'n {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query string without the leading `?`, if any.
    pub fn query(&self) -> Option<&str> {
        let path = self.path.split('#').next().unwrap_or_default();
        path.split_once('?').map(|(_, q)| q)
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let request = Request::from_pairs(pairs);
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "");
        assert_eq!(request.undecodable, [":path", "x-foo"]);
        assert_eq!(
            request.headers,
            [
                (":method".to_string(), "GET".to_string()),
                ("accept".to_string(), "*/*".to_string()),
                ("x-foo".to_string(), "ok".to_string()),
            ]
        );
    }
}
