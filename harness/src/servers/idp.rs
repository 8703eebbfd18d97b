//! `harness idp`: an OpenID provider for demos and end-to-end tests (discovery, JWKS, key
//! rotation, failure modes, fetch counters, token minting against the real clock).

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::http::{Reply, Request};
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
                    Mode::Fail => Reply::json(503, &json!({"error": "temporarily_unavailable"})),
                    Mode::Ok if path == JWKS => match self.ring.jwks(&self.keys, Path::new(".")) {
                        Ok(jwks) => Reply::json(200, &jwks),
                        Err(e) => Reply::text(500, &e.to_string()),
                    },
                    Mode::Ok => Reply::json(
                        200,
                        &json!({"issuer": self.issuer, "jwks_uri": self.jwks_uri}),
                    ),
                }
            }
            ("POST", "/admin/keys") => match serde_json::from_str::<Vec<String>>(body) {
                Ok(keys) => match self.ring.jwks(&keys, Path::new(".")) {
                    Ok(jwks) => {
                        self.keys = keys;
                        Reply::json(200, &jwks)
                    }
                    Err(e) => Reply::text(400, &e.to_string()),
                },
                Err(e) => Reply::text(400, &format!("expected a JSON array of key names: {e}")),
            },
            ("POST", "/admin/mode") => {
                self.mode = match body.trim() {
                    "ok" => Mode::Ok,
                    "fail" => Mode::Fail,
                    "hang" => Mode::Hang,
                    other => {
                        return Reply::text(400, &format!("mode {other:?}: use ok, fail or hang"));
                    }
                };
                Reply::text(200, "ok")
            }
            ("GET", "/admin/stats") => Reply::json(
                200,
                &json!({"jwks_fetches": self.jwks_fetches, "discovery_fetches": self.discovery_fetches}),
            ),
            ("POST", "/admin/token") => match self.mint(body) {
                Ok(t) => Reply::text(200, &t),
                Err(e) => Reply::text(400, &e.to_string()),
            },
            _ => Reply::text(404, "not found"),
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
    let listener = super::start(listen)?;
    let idp = Mutex::new(Idp {
        issuer: issuer.to_string(),
        jwks_uri: format!("http://{}{JWKS}", listener.local_addr()?),
        keys,
        ring,
        mode: Mode::Ok,
        jwks_fetches: 0,
        discovery_fetches: 0,
    });
    super::http::serve(
        listener,
        Arc::new(move |request: &Request| {
            let body = String::from_utf8_lossy(&request.body);
            match idp.lock() {
                Ok(mut idp) => idp.handle(&request.method, &request.target, &body),
                Err(_) => Reply::text(500, "idp state poisoned"),
            }
        }),
    );
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
            Reply::Respond { status, body, .. } => {
                let text = String::from_utf8(body).unwrap();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
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
