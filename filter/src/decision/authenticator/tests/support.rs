//! The fixtures every file uses: the quickstart configuration, the remote key set, default
//! claims signed by test key `rsa-a`, requests, and readers of a decision.

pub(super) use crate::config::ProviderId;
pub(super) use crate::decision::authenticator::*;
pub(super) use crate::jose::base64url;
pub(super) use crate::jose::jwks::{KeySet, Origin};
pub(super) use crate::jose::verify::InWasm;
pub(super) use crate::policy::response::{Reason, Reply, deny};
pub(super) use crate::testkit::{NOW, public_jwk, sign};
pub(super) use serde_json::json;

/// The DPoP challenge every challenge ends with by default (`dpop.mode` `allowed`).
pub(super) const DPOP_ALGS: &str =
    r#"DPoP algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 ES256K EdDSA""#;

pub(super) const ISS: &str = "https://issuer.test/";
pub(super) const AUD: &str = "https://api.test";

/// The quickstart, with remote keys for `auth0` and extra providers for the other cases.
pub(super) fn config() -> Value {
    json!({
        "realm": "api",
        "providers": {
            "auth0": {
                "issuer": ISS, "audiences": [AUD],
                "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/.well-known/jwks.json"},
                "claim_to_headers": [{"claim": "sub", "header": "x-user-id"}, {"claim": ["https://example.com/roles"], "header": "x-roles"}],
                "forward_payload_header": "x-jwt-payload"
            },
            "multi": {
                "issuer": "https://multi.test/", "audiences": ["m"],
                "algorithms": ["ES256", "EdDSA", "PS256", "RS256"],
                "local_jwks": {"keys": [public_jwk("ec256", "ec"), public_jwk("ed25519", "ed"), public_jwk("rsa-b", "rsa")]},
                "token_sources": [{"header": "authorization"}, {"query": "access_token"}, {"cookie": "at"}]
            },
            "hmac": {
                "issuer": "https://hmac.test/", "audiences": ["h"], "algorithms": ["HS256"],
                "local_jwks": {"keys": [{"kty": "oct", "kid": "s", "k": base64url::encode(SECRET.as_bytes())}]},
                "token_sources": [{"header": "x-hmac-token"}]
            }
        },
        "rules": [
            {"match": {"prefix": "/api/public"}},
            {"match": {"path": "/api/private"}, "requires": {"provider": "auth0"}},
            {"match": {"path": "/api/private-scoped", "methods": ["GET"]}, "requires": {"provider": "auth0", "scopes": ["read:messages"]}},
            {"match": {"path": "/api/admin"}, "requires": {"provider": "auth0", "claims": [{"claim": ["https://example.com/roles"], "includes": ["admin"]}]}},
            {"match": {"path": "/api/optional"}, "requires": {"provider": "auth0", "allow_missing": true}},
            {"match": {"prefix": "/multi"}, "requires": {"provider": "multi"}},
            {"match": {"prefix": "/hmac"}, "requires": {"provider": "hmac"}},
            {"match": {"prefix": "/any"}, "requires": {"any": [{"provider": "multi"}, {"provider": "auth0", "scopes": ["read:messages"]}]}},
            {"match": {"prefix": "/all"}, "requires": {"all": [{"provider": "auth0"}, {"provider": "hmac"}]}}
        ]
    })
}

pub(super) const SECRET: &str = "a-32-byte-secret-for-hs256-tests!";

pub(super) fn authenticator(config: &Value) -> Authenticator<InWasm> {
    Authenticator::new(
        Config::parse(config.to_string().as_bytes()).unwrap(),
        InWasm,
    )
}

/// The remote key sets, as the host side would report them.
pub(super) struct Keys {
    pub(super) set: Option<KeySet>,
    pub(super) refetch_allowed: bool,
    pub(super) unavailable: bool,
}

impl KeyStore for Keys {
    fn state(&self, _provider: ProviderId, _source: usize) -> KeyState<'_> {
        match (&self.set, self.unavailable) {
            (Some(set), _) => KeyState::Ready {
                set,
                refetch_allowed: self.refetch_allowed,
            },
            (None, true) => KeyState::Unavailable { retry_after_s: 30 },
            (None, false) => KeyState::Loading,
        }
    }
}

pub(super) fn remote_keys() -> Keys {
    let doc = json!({"keys": [public_jwk("rsa-a", "a")]});
    Keys {
        set: Some(
            KeySet::parse(doc.to_string().as_bytes(), Origin::Remote)
                .unwrap()
                .set,
        ),
        refetch_allowed: false,
        unavailable: false,
    }
}

pub(super) fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "user-1", "exp": NOW + 3600, "iat": NOW - 10,
           "scope": "openid read:messages", "https://example.com/roles": ["admin", "ops"]})
}

pub(super) fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

pub(super) fn token(claims: &Value) -> String {
    sign(
        "rsa-a",
        &json!({"alg": "RS256", "kid": "a", "typ": "JWT"}),
        claims,
    )
}

pub(super) fn get(path: &str, headers: &[(&str, &str)]) -> Request {
    Request::new("GET", path, headers)
}

pub(super) fn decide(path: &str, token: &str) -> Decision {
    let bearer = format!("Bearer {token}");
    authenticator(&config()).decide(
        &get(path, &[("authorization", &bearer)]),
        NOW,
        &remote_keys(),
    )
}

/// Header `name` of the reply to `decide(path, token)`.
pub(super) fn decided_header(path: &str, token: &str, name: &str) -> Option<String> {
    let bearer = format!("Bearer {token}");
    let req = get(path, &[("authorization", &bearer)]);
    let a = authenticator(&config());
    header(&a, &req, &a.decide(&req, NOW, &remote_keys()), name)
}

/// The reply the worker sends for a refused decision `d` of `a` on `req`.
pub(super) fn reply<V: SignatureVerifier>(
    a: &Authenticator<V>,
    req: &Request,
    d: &Decision,
) -> Option<Reply> {
    match d {
        Err(Stop::Refuse(r)) => Some(a.reply(req, r)),
        _ => None,
    }
}

/// Status and description (or 200 with no description) of a decision.
pub(super) fn verdict(d: &Decision) -> (u16, String) {
    match d {
        Ok(Pass::Forward { .. }) => (200, String::new()),
        Err(Stop::Refuse(r)) => {
            // Status and message do not depend on the configuration or the request.
            let reply = deny("api", &r.failure, &Request::default());
            let body: Value = serde_json::from_str(&reply.body).unwrap();
            (reply.status, body["message"].as_str().unwrap().to_string())
        }
        Err(Stop::Keys(_) | Stop::Introspect(_)) => (0, "pending".into()),
        Ok(Pass::Serve(doc)) => (200, doc.body.clone()),
    }
}

pub(super) fn invalid(description: &str) -> (u16, String) {
    (401, description.to_string())
}

pub(super) fn changes(d: &Decision) -> &HeaderChanges {
    match d {
        Ok(Pass::Forward { changes, .. }) => changes,
        other => panic!("not allowed: {other:?}"),
    }
}

/// Header `name` of the reply to refused decision `d` of `a` on `req`.
pub(super) fn header(
    a: &Authenticator<InWasm>,
    req: &Request,
    d: &Decision,
    name: &str,
) -> Option<String> {
    let reply = reply(a, req, d)?;
    let found = reply.headers.iter().find(|(k, _)| *k == name);
    found.map(|(_, v)| v.clone())
}

/// A GET of `path` as the host hands it over: `extra` pairs as raw bytes.
pub(super) fn get_bytes(path: &str, extra: &[(&[u8], &[u8])]) -> Request {
    let mut pairs: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":path", path.as_bytes()),
        (b":authority", b"api.test"),
    ];
    pairs.extend_from_slice(extra);
    Request::from_pairs(&pairs)
}

/// The in-wasm verifier, counting its calls.
pub(super) struct Counting<'c>(pub(super) &'c std::cell::Cell<u32>);

impl SignatureVerifier for Counting<'_> {
    fn verify(
        &self,
        alg: crate::jose::alg::Algorithm,
        key: &crate::jose::jwks::Key,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        self.0.set(self.0.get() + 1);
        InWasm.verify(alg, key, message, signature)
    }
}

pub(super) fn counting(calls: &std::cell::Cell<u32>) -> Authenticator<Counting<'_>> {
    Authenticator::new(
        Config::parse(config().to_string().as_bytes()).unwrap(),
        Counting(calls),
    )
}
