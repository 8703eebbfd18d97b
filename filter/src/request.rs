//! The request as the core sees it: method, raw `:path` and headers with lower-case names
//! (as HTTP/2 and Envoy present them). Nothing here is trusted.

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// The raw `:path`, query included.
    pub path: String,
    /// Every header instance in arrival order; names lower-case.
    pub headers: Vec<(String, String)>,
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
        }
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
}
