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
/// RFC 8414's metadata for an issuer without a path: the same document.
const METADATA: &str = "/.well-known/oauth-authorization-server";
const JWKS: &str = "/.well-known/jwks.json";

/// How discovery and JWKS requests are answered (`POST /admin/mode`, body = the name).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// `ok`: the document.
    Ok,
    /// `fail`: 503 with a JSON error.
    Fail,
    /// `error`: 500 with a text body.
    Error,
    /// `garbage`: 200, `application/json`, a body that is neither JSON nor UTF-8.
    Garbage,
    /// `slow:MS`: the `ok` answer after MS milliseconds (at most 600000).
    Slow(u64),
    /// `hang`: never answer (the connection stays open).
    Hang,
    /// `reset`: abort the connection (TCP RST) without answering.
    Reset,
}

const MAX_SLOW_MS: u64 = 600_000;
const MODES: &str = "ok, fail, error, garbage, slow:MS, hang or reset";
/// The `garbage` body: truncated JSON with bytes that are not UTF-8.
const GARBAGE: &[u8] = b"{\"keys\": [\xff\xfe<html>\x00";

impl Mode {
    fn parse(text: &str) -> Option<Mode> {
        Some(match text {
            "ok" => Mode::Ok,
            "fail" => Mode::Fail,
            "error" => Mode::Error,
            "garbage" => Mode::Garbage,
            "hang" => Mode::Hang,
            "reset" => Mode::Reset,
            _ => {
                let ms = text.strip_prefix("slow:")?.parse::<u64>().ok()?;
                if ms > MAX_SLOW_MS {
                    return None;
                }
                Mode::Slow(ms)
            }
        })
    }
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
    metadata_fetches: u64,
    /// Whether the OpenID Connect document is served (`POST /admin/openid`, `on`/`off`);
    /// off, it is 404 and only RFC 8414's document is left.
    openid: bool,
    /// Realms, each an issuer of its own with its own keys (`POST /admin/realms`):
    /// `/realms/<name>/.well-known/openid-configuration` and `/realms/<name>/certs`.
    realms: Map<String, Value>,
    /// Requests to each realm's documents, by `<name>/discovery` and `<name>/certs`.
    realm_fetches: Map<String, Value>,
    /// `http://<listen address>`, for the realms' `jwks_uri`.
    base: String,
}

impl Idp {
    fn handle(&mut self, method: &str, path: &str, body: &str) -> Reply {
        let path = path.split('?').next().unwrap_or(path);
        match (method, path) {
            ("GET", DISCOVERY | JWKS | METADATA) => {
                match path {
                    JWKS => self.jwks_fetches += 1,
                    METADATA => self.metadata_fetches += 1,
                    _ => self.discovery_fetches += 1,
                }
                if path == DISCOVERY && !self.openid {
                    return Reply::text(404, "not found");
                }
                match self.mode {
                    Mode::Hang => Reply::Hold,
                    Mode::Reset => Reply::Reset,
                    Mode::Fail => Reply::json(503, &json!({"error": "temporarily_unavailable"})),
                    Mode::Error => Reply::text(500, "internal error"),
                    Mode::Garbage => Reply::Respond {
                        status: 200,
                        content_type: "application/json",
                        body: GARBAGE.to_vec(),
                    },
                    Mode::Slow(ms) => Reply::Delayed(
                        std::time::Duration::from_millis(ms),
                        Box::new(self.document(path)),
                    ),
                    Mode::Ok => self.document(path),
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
            ("POST", "/admin/mode") => match Mode::parse(body.trim()) {
                Some(mode) => {
                    self.mode = mode;
                    Reply::text(200, "ok")
                }
                None => Reply::text(400, &format!("mode {:?}: use {MODES}", body.trim())),
            },
            ("POST", "/admin/openid") => match body.trim() {
                "on" | "off" => {
                    self.openid = body.trim() == "on";
                    Reply::text(200, "ok")
                }
                other => Reply::text(400, &format!("openid {other:?}: use on or off")),
            },
            ("POST", "/admin/realms") => match serde_json::from_str::<Map<String, Value>>(body) {
                Ok(realms) => {
                    for keys in realms.values() {
                        let names: Vec<String> =
                            serde_json::from_value(keys.clone()).unwrap_or_default();
                        if let Err(e) = self.ring.jwks(&names, Path::new(".")) {
                            return Reply::text(400, &e.to_string());
                        }
                    }
                    self.realms = realms;
                    Reply::text(200, "ok")
                }
                Err(e) => Reply::text(400, &format!("expected {{realm: [key names]}}: {e}")),
            },
            ("GET", "/admin/realm_stats") => {
                Reply::json(200, &Value::Object(self.realm_fetches.clone()))
            }
            ("GET", _) if path.starts_with("/realms/") => self.realm(path),
            ("GET", "/admin/stats") => Reply::json(
                200,
                &json!({
                    "jwks_fetches": self.jwks_fetches,
                    "discovery_fetches": self.discovery_fetches,
                    "metadata_fetches": self.metadata_fetches,
                }),
            ),
            ("POST", "/admin/token") => match self.mint(body) {
                Ok(t) => Reply::text(200, &t),
                Err(e) => Reply::text(400, &e.to_string()),
            },
            _ => Reply::text(404, "not found"),
        }
    }

    /// The `ok` answer for `path` (a metadata document or JWKS), as of now.
    fn document(&mut self, path: &str) -> Reply {
        if path == JWKS {
            match self.ring.jwks(&self.keys, Path::new(".")) {
                Ok(jwks) => Reply::json(200, &jwks),
                Err(e) => Reply::text(500, &e.to_string()),
            }
        } else {
            Reply::json(
                200,
                &json!({"issuer": self.issuer, "jwks_uri": self.jwks_uri}),
            )
        }
    }

    /// A realm's discovery document or key set (404 for an unknown realm or path).
    fn realm(&mut self, path: &str) -> Reply {
        let rest = path.strip_prefix("/realms/").unwrap_or_default();
        let Some((name, what)) = rest.split_once('/') else {
            return Reply::text(404, "not found");
        };
        let kind = match what {
            ".well-known/openid-configuration" => "discovery",
            "certs" => "certs",
            _ => return Reply::text(404, "not found"),
        };
        let counter = format!("{name}/{kind}");
        let n = self
            .realm_fetches
            .get(&counter)
            .and_then(Value::as_u64)
            .unwrap_or(0);
        self.realm_fetches.insert(counter, json!(n + 1));
        let Some(keys) = self.realms.get(name) else {
            return Reply::text(404, "no such realm");
        };
        if kind == "certs" {
            let names: Vec<String> = serde_json::from_value(keys.clone()).unwrap_or_default();
            return match self.ring.jwks(&names, Path::new(".")) {
                Ok(jwks) => Reply::json(200, &jwks),
                Err(e) => Reply::text(500, &e.to_string()),
            };
        }
        let issuer = format!("{}/realms/{name}", self.issuer.trim_end_matches('/'));
        let jwks_uri = format!("{}/realms/{name}/certs", self.base);
        Reply::json(200, &json!({"issuer": issuer, "jwks_uri": jwks_uri}))
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
        base: format!("http://{}", listener.local_addr()?),
        realms: Map::new(),
        realm_fetches: Map::new(),
        keys,
        ring,
        mode: Mode::Ok,
        jwks_fetches: 0,
        discovery_fetches: 0,
        metadata_fetches: 0,
        openid: true,
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
            metadata_fetches: 0,
            openid: true,
            realms: Map::new(),
            realm_fetches: Map::new(),
            base: "http://127.0.0.1:1".into(),
        }
    }

    #[test]
    fn realms_are_issuers_with_their_own_keys() {
        let mut idp = idp();
        let set = r#"{"alpha": ["ec256:a"], "beta": ["ec256:b"]}"#;
        assert_eq!(json_of(idp.handle("POST", "/admin/realms", set)).0, 200);
        let (s, doc) =
            json_of(idp.handle("GET", "/realms/beta/.well-known/openid-configuration", ""));
        assert_eq!(s, 200);
        assert_eq!(doc["issuer"], "https://issuer.test/realms/beta");
        assert_eq!(doc["jwks_uri"], "http://127.0.0.1:1/realms/beta/certs");
        let (_, jwks) = json_of(idp.handle("GET", "/realms/alpha/certs", ""));
        assert_eq!(jwks["keys"][0]["kid"], "a");
        assert_eq!(json_of(idp.handle("GET", "/realms/gamma/certs", "")).0, 404);
        let (_, stats) = json_of(idp.handle("GET", "/admin/realm_stats", ""));
        assert_eq!(
            stats,
            json!({"beta/discovery": 1, "alpha/certs": 1, "gamma/certs": 1})
        );
    }

    #[test]
    fn rfc_8414_metadata_stays_when_openid_is_off() {
        let mut idp = idp();
        let get = |idp: &mut Idp, path| json_of(idp.handle("GET", path, ""));
        assert_eq!(get(&mut idp, METADATA).1["issuer"], "https://issuer.test/");
        assert_eq!(json_of(idp.handle("POST", "/admin/openid", "off")).0, 200);
        assert_eq!(get(&mut idp, DISCOVERY).0, 404);
        assert_eq!(get(&mut idp, METADATA).0, 200);
        assert_eq!(json_of(idp.handle("POST", "/admin/openid", "maybe")).0, 400);
        let (_, stats) = json_of(idp.handle("GET", "/admin/stats", ""));
        assert_eq!(
            (
                stats["discovery_fetches"].as_u64(),
                stats["metadata_fetches"].as_u64()
            ),
            (Some(1), Some(2))
        );
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
            Reply::Hold | Reply::Reset | Reply::Delayed(..) | Reply::Raw { .. } => (0, Value::Null),
        }
    }

    #[test]
    fn failure_modes() {
        let mut idp = idp();
        let mode = |idp: &mut Idp, m: &str| json_of(idp.handle("POST", "/admin/mode", m)).0;
        assert_eq!(mode(&mut idp, "error"), 200);
        let (s, body) = json_of(idp.handle("GET", JWKS, ""));
        assert_eq!((s, body), (500, json!("internal error")));
        assert_eq!(mode(&mut idp, "garbage"), 200);
        match idp.handle("GET", JWKS, "") {
            Reply::Respond { status, body, .. } => {
                assert_eq!(status, 200);
                assert!(std::str::from_utf8(&body).is_err());
                assert!(serde_json::from_slice::<Value>(&body).is_err());
            }
            _ => panic!("garbage must answer"),
        }
        assert_eq!(mode(&mut idp, "reset"), 200);
        assert!(matches!(idp.handle("GET", JWKS, ""), Reply::Reset));
        assert_eq!(mode(&mut idp, "slow:1500"), 200);
        match idp.handle("GET", DISCOVERY, "") {
            Reply::Delayed(d, inner) => {
                assert_eq!(d, std::time::Duration::from_millis(1500));
                assert_eq!(json_of(*inner).1["issuer"], "https://issuer.test/");
            }
            _ => panic!("slow must delay"),
        }
        // The delayed answer is the key set at request time.
        idp.handle("POST", "/admin/keys", r#"["ec256:c"]"#);
        match idp.handle("GET", JWKS, "") {
            Reply::Delayed(_, inner) => assert_eq!(json_of(*inner).1["keys"][0]["kid"], "c"),
            _ => panic!("slow must delay"),
        }
        for bad in ["slow:", "slow:x", "slow:600001", "Slow:1", "nope", ""] {
            assert_eq!(mode(&mut idp, bad), 400, "{bad:?}");
        }
        assert_eq!(idp.mode, Mode::Slow(1500), "a refused mode changes nothing");
        assert_eq!(mode(&mut idp, " ok\n"), 200);
        assert_eq!(json_of(idp.handle("GET", JWKS, "")).0, 200);
        let (_, stats) = json_of(idp.handle("GET", "/admin/stats", ""));
        assert_eq!(
            (
                stats["jwks_fetches"].clone(),
                stats["discovery_fetches"].clone()
            ),
            (json!(5), json!(1)),
            "every mode counts the fetch"
        );
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
        assert_eq!(
            stats,
            json!({"jwks_fetches": 4, "discovery_fetches": 1, "metadata_fetches": 0})
        );
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
