//! The harness of each fuzz target: one plain function of the input bytes, called by the
//! libFuzzer target of the same name (fuzz/fuzz_targets/, nightly) and by the stable replay
//! of the corpus and of every crash (tests/replay.rs, in `make test`). Each one
//! must not panic, and asserts what must hold of the core's answer beyond that.

use jwt_filter::config::{Config, Mode, ProviderId};
use jwt_filter::decision::authenticator::{
    Authenticator, Decision, KeyState, KeyStore, NeedKeys, Pass, Stop,
};
use jwt_filter::http::request::Request;
use jwt_filter::jose::alg::Algorithm;
use jwt_filter::jose::base64url;
use jwt_filter::jose::json;
use jwt_filter::jose::jwks::{KeySet, MAX_KEYS, MAX_KID_BYTES, Material, Origin};
use jwt_filter::jose::jws;
use jwt_filter::jose::verify::{InWasm, SignatureVerifier};
use jwt_filter::policy::authz::Requirement;
use proxy_wasm_abi::header_map;
use serde_json::Value;

/// The clock of the `decide` target, give or take what its input says (the test keys'
/// tokens are issued around it).
pub const NOW: u64 = 1_700_000_000;

/// The strict parser agrees with serde_json except where it is stricter (duplicate keys,
/// depth), and what it returns serializes to text it parses back to the same value.
pub fn json(data: &[u8]) {
    let strict = json::parse(data);
    match (&strict, serde_json::from_slice::<Value>(data)) {
        (Ok(value), Ok(lenient)) => assert_eq!(value, &lenient),
        (Ok(_), Err(e)) => panic!("strict parser accepts what serde_json refuses: {e}"),
        (Err(e), Ok(_)) => assert!(
            e.starts_with("duplicate key") || e.contains("nested deeper"),
            "refused for another reason than duplicates or depth: {e}"
        ),
        (Err(_), Err(_)) => {}
    }
    if let Ok(value) = strict {
        let again = json::parse(value.to_string().as_bytes()).expect("serialized value parses");
        // Floats are parsed to within an ulp (serde_json without `float_roundtrip`).
        if !has_float(&value) {
            assert_eq!(again, value);
        }
    }
}

/// A token that parses is three canonical base64url segments; the parts it hands on are
/// exactly the token's.
pub fn jws(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(jws) = jws::parse(token) else {
        return;
    };
    let segments: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = segments[..] else {
        panic!("a token of {} segments parsed", segments.len());
    };
    assert_eq!(
        jws.signing_input,
        &token[..header.len() + 1 + payload.len()]
    );
    assert_eq!(jws.payload_b64, payload);
    assert_eq!(base64url::encode(&jws.payload), payload);
    assert_eq!(base64url::encode(&jws.signature), signature);
    assert!(!jws.signature.is_empty());
    if let Ok(claims) = jws.claims() {
        assert_eq!(json::parse_object(&jws.payload), Ok(claims));
    }
}

/// A key set that loads (as configuration or as a network answer) keeps only usable keys,
/// and a key it selects fits the token's algorithm and `kid`.
pub fn jwks(data: &[u8]) {
    for origin in [Origin::Config, Origin::Remote] {
        let Ok(loaded) = KeySet::parse(data, origin) else {
            continue;
        };
        let keys = loaded.set.keys();
        assert!((1..=MAX_KEYS).contains(&keys.len()));
        let symmetric = keys
            .iter()
            .filter(|k| matches!(*k.material, Material::Oct(_)))
            .count();
        assert!(symmetric == 0 || (symmetric == keys.len() && origin == Origin::Config));
        for (i, key) in keys.iter().enumerate() {
            let kid = key.kid.as_deref();
            assert!(kid.is_none_or(|k| k.len() <= MAX_KID_BYTES));
            assert!(kid.is_none() || keys[..i].iter().all(|o| o.kid.as_deref() != kid));
            match &*key.material {
                Material::Rsa { n, e } => {
                    assert!((256..=512).contains(&n.len()) && n[0] != 0);
                    assert!(e.first().is_some_and(|&b| b != 0));
                }
                Material::P256(point) => assert!(point.len() == 65 && point[0] == 4),
                Material::P384(point) => assert!(point.len() == 97 && point[0] == 4),
                Material::P521(point) => assert!(point.len() == 133 && point[0] == 4),
                Material::Secp256k1(point) => assert!(point.len() == 65 && point[0] == 4),
                Material::Ed25519(point) => assert_eq!(point.len(), 32),
                Material::Oct(secret) => assert!(!secret.is_empty()),
            }
        }
        let kids = keys.iter().map(|k| k.kid.as_deref());
        for kid in kids.chain([None, Some("no such kid")]) {
            for alg in Algorithm::ALL {
                if let Ok(key) = loaded.set.select(kid, alg) {
                    assert!(key.fits(alg));
                    assert!(kid.is_none() || key.kid.as_deref() == kid);
                }
            }
        }
    }
}

/// A configuration that compiles refers only to its own providers, and an authenticator
/// built from it decides; one that parses compiles the same way from its canonical text.
pub fn config(data: &[u8]) {
    let outcome = Config::parse(data);
    if let Ok(config) = &outcome {
        assert!(!config.providers.is_empty());
        for rule in &config.rules {
            if let Some(requirement) = &rule.requires {
                assert_providers_exist(requirement, config.providers.len());
            }
        }
        let authenticator = Authenticator::new(config.clone(), InWasm);
        for path in ["/", "/api/private?access_token=x"] {
            let req = Request::new("GET", path, &[("authorization", "Bearer a.b.c")]);
            let _ = authenticator.decide(&req, NOW, &Store::loading());
        }
    }
    if let Ok(value) = json::parse(data)
        && !has_float(&value)
    {
        let again = Config::parse(value.to_string().as_bytes());
        assert_eq!(again.map(|_| ()), outcome.map(|_| ()));
    }
}

fn assert_providers_exist(requirement: &Requirement, providers: usize) {
    match requirement {
        Requirement::Provider(p) => assert!(p.provider.0 < providers),
        Requirement::Any(list) | Requirement::All(list) => {
            assert!(!list.is_empty());
            for r in list {
                assert_providers_exist(r, providers);
            }
        }
    }
}

/// A map that decodes is exactly the encoding of its pairs (and whatever follows them).
pub fn header_map(data: &[u8]) {
    if let Some(pairs) = header_map::decode(data) {
        let encoded = header_map::encode(&pairs);
        assert!(data.starts_with(&encoded) || (data.is_empty() && pairs.is_empty()));
        Request::from_pairs(&pairs);
    }
}

/// The configurations `decide` chooses from (its input's first byte). They use remote keys
/// only, so that every key comes from the input, and header prefixes that end in a space,
/// so that a token is always a maximal run of base64url characters and dots in a header
/// value (what `signed_token_in` looks for).
pub const CONFIGS: [&str; 4] = [
    // The quickstart.
    r#"{"realm": "api",
        "providers": {"auth0": {"issuer": "https://issuer.test/", "audiences": ["https://api.test"],
          "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/.well-known/jwks.json"}}},
        "rules": [
          {"match": {"prefix": "/api/public"}},
          {"match": {"path": "/api/private"}, "requires": {"provider": "auth0"}},
          {"match": {"path": "/api/private-scoped", "methods": ["GET"]},
           "requires": {"provider": "auth0", "scopes": ["read:messages"]}}]}"#,
    // Every token source, identity headers, two providers, every kind of requirement.
    r#"{"unmatched": "allow", "path_parameters": "strip",
        "providers": {
          "main": {"issuer": "https://issuer.test/", "audiences": ["https://api.test", "other"],
            "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/jwks"},
            "algorithms": ["RS256", "PS256", "ES256", "EdDSA"], "max_token_age_s": 7200,
            "token_sources": [{"header": "authorization"}, {"query": "access_token"},
                              {"cookie": "at"}, {"header": "x-token"}],
            "forward_payload_header": "x-jwt-payload",
            "claim_to_headers": [{"claim": "sub", "header": "x-user-id"},
                                 {"claim": "org.id", "header": "x-org"},
                                 {"claim": ["https://example.com/roles"], "header": "x-roles"}]},
          "strict": {"issuer": "https://issuer.test/", "audiences": ["https://api.test"],
            "discovery": {"cluster": "idp"}, "algorithms": ["RS256", "ES256", "EdDSA"],
            "require_typ": "at+jwt", "forward": true, "token_sources": [{"header": "x-at"}]}},
        "rules": [
          {"match": {"prefix": "/api/public"}},
          {"match": {"path": "/api/private-scoped", "methods": ["GET", "HEAD"]},
           "requires": {"provider": "main", "scopes": ["read:messages"]}},
          {"match": {"prefix": "/api/admin"}, "requires": {"all": [
            {"provider": "main", "claims": [{"claim": "org.id", "equals": "o1"}]},
            {"provider": "main", "scopes_any": ["admin", "read:messages"]}]}},
          {"match": {"prefix": "/api/either"}, "requires": {"any": [
            {"provider": "strict"},
            {"provider": "main", "claims": [{"claim": ["https://example.com/roles"], "includes": ["editor"]}]}]}},
          {"match": {"prefix": "/api/optional"}, "requires": {"provider": "main", "allow_missing": true}},
          {"match": {"prefix": "/api"}, "requires": {"provider": "main"}}]}"#,
    // Report mode.
    r#"{"mode": "report",
        "providers": {"auth0": {"issuer": "https://issuer.test/", "audiences": ["https://api.test"],
          "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/jwks"},
          "algorithms": ["RS256", "ES256", "EdDSA"],
          "claim_to_headers": [{"claim": "sub", "header": "x-user-id"}]}},
        "rules": [
          {"match": {"prefix": "/api/public"}},
          {"match": {"prefix": "/api"}, "requires": {"provider": "auth0", "scopes": ["read:messages"]}}]}"#,
    // Gateway policies: hosts, route names, path templates and claims bound to them, an
    // issuer template, per-requirement audiences, preflights, metadata, properties.
    r#"{"cors_preflight": "pass",
        "resource_metadata": {"resource": "https://api.test", "authorization_servers": ["https://issuer.test/"]},
        "providers": {"main": {"issuer": ["https://issuer.test/", "https://login.test/{tid}/v2.0"],
          "audiences": ["https://api.test"],
          "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/jwks"},
          "algorithms": ["RS256", "ES256", "EdDSA"],
          "claim_to_headers": [{"claim": "sub", "header": "x-user-id"}],
          "claim_to_properties": [{"claim": "sub", "property": "jwt_sub"}]}},
        "rules": [
          {"match": {"hosts": ["admin.test", "*.admin.test:8443"], "prefix": "/api"},
           "requires": {"provider": "main", "scopes": ["admin"], "audiences": ["https://admin.test"]}},
          {"match": {"route": ["public-route"], "prefix": "/"}},
          {"match": {"path_template": "/tenants/{tenant}/{rest=**}", "methods": ["GET"]},
           "requires": {"provider": "main", "claims": [{"claim": "tid", "equals_param": "tenant"},
                                                       {"claim": "tenants", "includes_param": "tenant"}]}},
          {"match": {"prefix": "/header"},
           "requires": {"provider": "main", "claims": [{"claim": "tid", "equals_header": "x-tenant-id"}]}},
          {"match": {"path_template": "/api/{name}"},
           "requires": {"provider": "main", "claims": [{"claim": "sub", "prefix": "user-"},
                                                       {"claim": "act", "present": false},
                                                       {"claim": "scope", "not_includes": ["banned"]}]}}]}"#,
];

/// The input of the `decide` target: the configuration (index into `CONFIGS`), the key
/// state, the clock (`NOW` plus `clock` as a signed number of 5 minutes), then the key set
/// document, a blank line, and the request's headers (pseudo-headers included), one
/// `name: value` per line.
pub fn decide_input(
    config: u8,
    keys: u8,
    clock: i8,
    jwks: &[u8],
    headers: &[(&[u8], &[u8])],
) -> Vec<u8> {
    let mut input = vec![config, keys, clock.to_le_bytes()[0]];
    input.extend_from_slice(jwks);
    input.extend_from_slice(b"\n\n");
    for (name, value) in headers {
        input.extend_from_slice(name);
        input.extend_from_slice(b": ");
        input.extend_from_slice(value);
        input.push(b'\n');
    }
    input
}

/// The decision on an arbitrary request with an arbitrary key set (see `decide_input`).
/// In enforce mode, a request allowed with the keys but not without them carries a token
/// signed by one of them; identity headers the request carries are always removed; a
/// pending decision matches the key state; and the decision is the same when the token
/// cache answers. Returns the decision, if the input is long enough to have one.
pub fn decide(data: &[u8]) -> Option<Decision> {
    let (&[config, state, clock], rest) = data.split_first_chunk()?;
    let (jwks, headers) = split_once(rest, b"\n\n").unwrap_or((rest, b""));
    let pairs: Vec<(&[u8], &[u8])> = headers
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            // The name's own leading `:` (pseudo-headers) is not the separator.
            let at = line.get(1..)?.windows(2).position(|w| w == b": ")? + 1;
            Some((&line[..at], &line[at + 2..]))
        })
        .collect();
    let req = Request::from_pairs(&pairs);
    let set = KeySet::parse(jwks, Origin::Remote).ok().map(|l| l.set);
    let store = Store::new(set.as_ref(), state);
    let now = NOW.saturating_add_signed(i64::from(clock as i8) * 300);
    let config = CONFIGS[usize::from(config) % CONFIGS.len()];
    let config = Config::parse(config.as_bytes()).expect("the fuzz configurations compile");
    let authenticator = Authenticator::new(config, InWasm);
    let config = &authenticator.config;

    let without_keys = authenticator.decide(&req, now, &Store::unavailable());
    let decision = authenticator.decide(&req, now, &store);
    assert_eq!(authenticator.decide(&req, now, &store), decision, "cached");
    match &decision {
        Ok(Pass::Forward {
            changes, reported, ..
        }) => {
            for header in config.identity_headers.iter().filter(|h| req.has_header(h)) {
                assert!(changes.remove.contains(header), "{header} kept");
            }
            if config.mode == Mode::Enforce {
                assert!(reported.is_none());
                if !matches!(without_keys, Ok(Pass::Forward { .. })) {
                    let set = set.as_ref().expect("allowed with keys");
                    assert!(signed_token_in(&req, set), "allowed without a signed token");
                }
            }
        }
        Err(Stop::Keys(NeedKeys {
            provider,
            sources,
            unknown_kid,
            ..
        })) => {
            assert!(provider.0 < config.providers.len());
            // Some source of the provider is named, and only its own.
            let all = (1u16 << config.providers[provider.0].keys.len()) - 1;
            assert!(*sources != 0 && u16::from(*sources) & !all == 0);
            let expected = if *unknown_kid {
                Store::READY_REFETCH
            } else {
                Store::LOADING
            };
            assert_eq!(store.kind, expected);
        }
        Err(Stop::Refuse(_)) => assert_eq!(config.mode, Mode::Enforce),
        // The fuzz configurations have no introspection provider.
        Err(Stop::Introspect(_)) => panic!("an introspection answer wanted without a provider"),
        Ok(Pass::Serve(_)) => assert!(!config.resource_metadata.is_empty()),
    }
    Some(decision)
}

fn split_once<'a>(bytes: &'a [u8], separator: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = bytes
        .windows(separator.len())
        .position(|w| w == separator)?;
    Some((&bytes[..at], &bytes[at + separator.len()..]))
}

/// Whether some header value holds a token that a key of `set` signed: a maximal run of
/// base64url characters and dots that parses as a JWS whose signature one of the keys
/// that fit its algorithm verifies.
fn signed_token_in(req: &Request, set: &KeySet) -> bool {
    let token_char = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    req.headers()
        .flat_map(|(_, value)| value.split(|c| !token_char(c)))
        .filter_map(|run| jws::parse(run).ok())
        .any(|jws| {
            set.keys().iter().any(|key| {
                key.fits(jws.alg)
                    && InWasm.verify(jws.alg, key, jws.signing_input.as_bytes(), &jws.signature)
            })
        })
}

/// The key state the `decide` target's second byte chooses, with the input's key set.
struct Store<'k> {
    set: Option<&'k KeySet>,
    kind: u8,
}

impl<'k> Store<'k> {
    const READY_REFETCH: u8 = 0;
    const READY: u8 = 1;
    const LOADING: u8 = 2;
    const UNAVAILABLE: u8 = 3;

    /// A set that did not load leaves the state loading or unavailable.
    fn new(set: Option<&'k KeySet>, byte: u8) -> Self {
        let kind = match (set, byte % 4) {
            (None, kind) => Self::LOADING + kind % 2,
            (Some(_), kind) => kind,
        };
        Store { set, kind }
    }
    fn loading() -> Self {
        Store {
            set: None,
            kind: Self::LOADING,
        }
    }
    fn unavailable() -> Self {
        Store {
            set: None,
            kind: Self::UNAVAILABLE,
        }
    }
}

impl KeyStore for Store<'_> {
    fn state(&self, _: ProviderId, _: usize) -> KeyState<'_> {
        match (self.set, self.kind) {
            (Some(set), Self::READY_REFETCH | Self::READY) => KeyState::Ready {
                set,
                refetch_allowed: self.kind == Self::READY_REFETCH,
            },
            (_, Self::LOADING) => KeyState::Loading,
            _ => KeyState::Unavailable { retry_after_s: 30 },
        }
    }
}

fn has_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}
