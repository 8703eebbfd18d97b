//! `harness upstream`: answers every request with a JSON echo of what it received (its
//! body too, as `body`, when it has one).

use std::sync::Arc;

use anyhow::Result;
use serde_json::{Map, Value, json};

use super::http::{Reply, Request};

/// The quickstart's messages for its three routes.
fn message(path: &str) -> Option<&'static str> {
    match path {
        "/api/public" => {
            Some("Hello from a public endpoint! You don't need to be authenticated to see this.")
        }
        "/api/private" => {
            Some("Hello from a private endpoint! You need to be authenticated to see this.")
        }
        "/api/private-scoped" => Some(
            "Hello from a private endpoint! You need to be authenticated and have a scope of read:messages to see this.",
        ),
        _ => None,
    }
}

/// `{"method", "path", "headers": {lowercased name: value}, "message"?}`; repeated headers are
/// joined with `,`. The harness's simulated upstream answers with the same body.
pub fn echo<'a>(
    method: &str,
    path: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let joined = match map.get(&name).and_then(Value::as_str) {
            Some(prev) => format!("{prev},{value}"),
            None => value.to_string(),
        };
        map.insert(name, joined.into());
    }
    let mut body = json!({"method": method, "path": path, "headers": map});
    if let Some(m) = message(path.split('?').next().unwrap_or(path)) {
        body["message"] = m.into();
    }
    body
}

/// Serves until SIGTERM/SIGINT.
pub fn serve(listen: &str) -> Result<()> {
    let listener = super::start(listen)?;
    super::http::serve(
        listener,
        Arc::new(|request: &Request| {
            let headers = request
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()));
            let mut echoed = echo(&request.method, &request.target, headers);
            // The body the upstream received, when there is one (as text).
            if !request.body.is_empty() {
                echoed["body"] = String::from_utf8_lossy(&request.body).into();
            }
            Reply::json(200, &echoed)
        }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_lowercases_joins_and_adds_the_quickstart_message() {
        let body = echo("GET", "/api/public?x=1", [("X-A", "1"), ("x-a", "2")]);
        assert_eq!(body["headers"]["x-a"], "1,2");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("public endpoint")
        );
        assert!(echo("GET", "/other", []).get("message").is_none());
    }
}
