//! `harness idp`: an OpenID provider for demos and end-to-end tests (discovery, JWKS, key
//! rotation, failure modes, fetch counters, token minting against the real clock).

use std::path::Path;

use anyhow::Result;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::keys::KeyRing;
use crate::token;

const DISCOVERY: &str = "/.well-known/openid-configuration";
const JWKS: &str = "/.well-known/jwks.json";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Fail,
    Hang,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    key: String,
    #[serde(default)]
    claims: Map<String, Value>,
    #[serde(default)]
    header: Map<String, Value>,
}

struct Idp {
    issuer: String,
    jwks_uri: String,
    keys: Vec<String>,
    ring: KeyRing,
    mode: Mode,
    jwks_fetches: u64,
    discovery_fetches: u64,
}

/// What to do with one request: answer it, or keep it open forever (`hang` mode).
enum Reply {
    Answer(u16, Value),
    Text(u16, String),
    Hold,
}

impl Idp {
    fn handle(&mut self, method: &str, path: &str, body: &str) -> Reply {
        let path = path.split('?').next().unwrap_or(path);
        match (method, path) {
            ("GET", DISCOVERY | JWKS) => {
                if path == JWKS {
                    self.jwks_fetches += 1;
                } else {
                    self.discovery_fetches += 1;
                }
                match self.mode {
                    Mode::Hang => Reply::Hold,
                    Mode::Fail => Reply::Answer(503, json!({"error": "temporarily_unavailable"})),
                    Mode::Ok if path == JWKS => match self.ring.jwks(&self.keys, Path::new(".")) {
                        Ok(jwks) => Reply::Answer(200, jwks),
                        Err(e) => Reply::Text(500, e.to_string()),
                    },
                    Mode::Ok => Reply::Answer(
                        200,
                        json!({"issuer": self.issuer, "jwks_uri": self.jwks_uri}),
                    ),
                }
            }
            ("POST", "/admin/keys") => match serde_json::from_str::<Vec<String>>(body) {
                Ok(keys) => match self.ring.jwks(&keys, Path::new(".")) {
                    Ok(jwks) => {
                        self.keys = keys;
                        Reply::Answer(200, jwks)
                    }
                    Err(e) => Reply::Text(400, e.to_string()),
                },
                Err(e) => Reply::Text(400, format!("expected a JSON array of key names: {e}")),
            },
            ("POST", "/admin/mode") => {
                self.mode = match body.trim() {
                    "ok" => Mode::Ok,
                    "fail" => Mode::Fail,
                    "hang" => Mode::Hang,
                    other => {
                        return Reply::Text(400, format!("mode {other:?}: use ok, fail or hang"));
                    }
                };
                Reply::Text(200, "ok".into())
            }
            ("GET", "/admin/stats") => Reply::Answer(
                200,
                json!({"jwks_fetches": self.jwks_fetches, "discovery_fetches": self.discovery_fetches}),
            ),
            ("POST", "/admin/token") => match self.mint(body) {
                Ok(t) => Reply::Text(200, t),
                Err(e) => Reply::Text(400, e.to_string()),
            },
            _ => Reply::Text(404, "not found".into()),
        }
    }

    fn mint(&mut self, body: &str) -> Result<String> {
        let req: TokenRequest = serde_json::from_str(body)?;
        let key = self.ring.get(&req.key, Path::new("."))?;
        token::mint(&key, &req.header, &req.claims, unix_now(), None)
    }
}

/// Current Unix time in seconds (the demo servers use the real clock).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Serves until SIGTERM/SIGINT.
pub fn serve(listen: &str, issuer: &str, keys: Vec<String>) -> Result<()> {
    let mut ring = KeyRing::default();
    ring.jwks(&keys, Path::new("."))?; // generate before announcing readiness
    let server = super::start(listen)?;
    let addr = server
        .server_addr()
        .to_ip()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut idp = Idp {
        issuer: issuer.to_string(),
        jwks_uri: format!("http://{addr}{JWKS}"),
        keys,
        ring,
        mode: Mode::Ok,
        jwks_fetches: 0,
        discovery_fetches: 0,
    };
    let mut held = Vec::new();
    for mut request in server.incoming_requests() {
        let mut body = String::new();
        if std::io::Read::read_to_string(request.as_reader(), &mut body).is_err() {
            let _ = request.respond(super::text_response(400, "unreadable body"));
            continue;
        }
        let method = request.method().as_str().to_string();
        let _ = match idp.handle(&method, request.url(), &body) {
            Reply::Answer(status, value) => request.respond(super::json_response(status, &value)),
            Reply::Text(status, text) => request.respond(super::text_response(status, &text)),
            Reply::Hold => {
                held.push(request);
                Ok(())
            }
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idp() -> Idp {
        Idp {
            issuer: "https://issuer.test/".into(),
            jwks_uri: "http://127.0.0.1:1/.well-known/jwks.json".into(),
            keys: vec!["ec256:a".into()],
            ring: KeyRing::default(),
            mode: Mode::Ok,
            jwks_fetches: 0,
            discovery_fetches: 0,
        }
    }

    fn json_of(reply: Reply) -> (u16, Value) {
        match reply {
            Reply::Answer(s, v) => (s, v),
            Reply::Text(s, t) => (s, Value::String(t)),
            Reply::Hold => (0, Value::Null),
        }
    }

    #[test]
    fn rotation_modes_and_stats() {
        let mut idp = idp();
        let (s, jwks) = json_of(idp.handle("GET", JWKS, ""));
        assert_eq!((s, jwks["keys"][0]["kid"].clone()), (200, json!("a")));
        let (_, disco) = json_of(idp.handle("GET", DISCOVERY, ""));
        assert_eq!(disco["issuer"], "https://issuer.test/");
        assert_eq!(
            json_of(idp.handle("POST", "/admin/keys", r#"["ec256:b"]"#)).0,
            200
        );
        let (_, jwks) = json_of(idp.handle("GET", JWKS, ""));
        assert_eq!(jwks["keys"][0]["kid"], "b");
        assert_eq!(json_of(idp.handle("POST", "/admin/mode", "fail")).0, 200);
        assert_eq!(json_of(idp.handle("GET", JWKS, "")).0, 503);
        assert_eq!(json_of(idp.handle("POST", "/admin/mode", "hang")).0, 200);
        assert!(matches!(idp.handle("GET", JWKS, ""), Reply::Hold));
        let (_, stats) = json_of(idp.handle("GET", "/admin/stats", ""));
        assert_eq!(stats, json!({"jwks_fetches": 4, "discovery_fetches": 1}));
        let (s, tok) = json_of(idp.handle(
            "POST",
            "/admin/token",
            r#"{"key":"ec256:a","claims":{"exp":"+1h"}}"#,
        ));
        assert_eq!(s, 200);
        assert_eq!(tok.as_str().unwrap().split('.').count(), 3);
        assert_eq!(json_of(idp.handle("POST", "/admin/keys", "nope")).0, 400);
    }
}
