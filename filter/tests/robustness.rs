//! The core must never panic (in Envoy a panic kills the VM and every request on that
//! worker) and must refuse every altered token. Deterministic pseudo-random mutations of a
//! valid request, token and configuration exercise that natively, without a fuzzer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unreachable,
    reason = "test code: a panic fails the test, and never runs in the VM"
)]

use jwt_filter::config::Config;
use jwt_filter::decision::authenticator::{Authenticator, FixedKeys, Pass};
use jwt_filter::http::request::Request;
use jwt_filter::jose::jwks::{KeySet, Origin};
use jwt_filter::jose::verify::InWasm;
use jwt_filter::policy::binding::NoCertificate;
use jwt_filter_testkit::families::{FAMILIES, Need, Route, family_need};
use jwt_filter_testkit::keys::{self, NOW};
use serde_json::json;

/// xorshift64*: reproducible, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One random edit: flip, insert, delete or duplicate bytes, or splice in a tricky string
/// (including the pieces of the path matrix's attacks, tests/paths/cases.json).
fn mutate(rng: &mut Rng, input: &str) -> String {
    const TRICKY: [&str; 31] = [
        ".",
        "..",
        "=",
        "%2e",
        "%2f",
        "\"",
        "{",
        "[[[[",
        "\u{0}",
        "é",
        "+/",
        " ",
        "/",
        "//",
        ";",
        "..;",
        "%3b",
        "%5c",
        "\\",
        "%25",
        "%252e",
        "%u002e",
        "%c0%ae",
        "%00",
        "#",
        "?",
        "\u{FF0E}",
        "\u{FF0F}",
        "%ef%bc%8e",
        "P",
        "%70",
    ];
    let mut bytes = input.as_bytes().to_vec();
    let at = rng.below(bytes.len() + 1);
    match rng.below(5) {
        0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
        1 => bytes.insert(at, rng.below(256) as u8),
        2 if at < bytes.len() => {
            bytes.remove(at);
        }
        3 => {
            let piece = bytes[at..]
                .iter()
                .take(rng.below(40))
                .copied()
                .collect::<Vec<_>>();
            bytes.splice(at..at, piece);
        }
        _ => {
            let t = TRICKY[rng.below(TRICKY.len())].as_bytes();
            bytes.splice(at..at, t.iter().copied());
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn config_text() -> String {
    json!({
        "providers": {"p": {
            "issuer": "https://issuer.test/", "audiences": ["https://api.test"],
            "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/jwks"},
            "token_sources": [{"header": "authorization"}, {"query": "access_token"}, {"cookie": "at"}, {"body": "access_token"}],
            "claim_to_headers": [{"claim": "sub", "header": "x-user-id"}]
        }},
        "max_body_bytes": 4096,
        "rules": [
            {"match": {"prefix": "/public"}},
            {"match": {"prefix": "/api"}, "requires": {"provider": "p", "scopes": ["read"]}}
        ]
    })
    .to_string()
}

/// A configuration with every policy field, for the mutations.
fn policy_config_text() -> String {
    json!({
        "cors_preflight": "pass",
        "resource_metadata": {"resource": "https://api.test", "scopes_supported": ["read"]},
        "providers": {"p": {
            "issuer": ["https://issuer.test/", "https://login.test/{tid}/v2.0"],
            "audiences": ["https://api.test"],
            "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/jwks"},
            "claim_to_properties": [{"claim": "sub", "property": "jwt_sub"}]
        }},
        "rules": [
            {"match": {"hosts": ["*.admin.test:8443"], "route": ["public-route"], "prefix": "/"}},
            {"match": {"path_template": "/tenants/{tenant}/{rest=**}"},
             "requires": {"provider": "p", "audiences": ["https://api.test"], "claims": [
                {"claim": "tid", "equals_param": "tenant"},
                {"claim": "tenants", "includes_param": "rest"},
                {"claim": "tid", "equals_header": "x-tenant-id"},
                {"claim": "act", "present": false},
                {"claim": "sub", "prefix": "u"},
                {"claim": "roles", "not_includes": ["banned"]}]}}
        ]
    })
    .to_string()
}

fn good_token() -> String {
    let claims = json!({"iss": "https://issuer.test/", "aud": "https://api.test", "sub": "u", "scope": "read", "exp": NOW + 3600});
    keys::sign("rsa-a", &json!({"alg": "RS256", "kid": "a"}), &claims)
}

/// The authenticator for `config_text`, its key set, and a token it accepts.
fn fixture() -> (Authenticator<InWasm>, FixedKeys, String) {
    let config = Config::parse(config_text().as_bytes()).unwrap();
    let jwks = json!({"keys": [keys::public_jwk("rsa-a", "a")]}).to_string();
    let set = KeySet::parse(jwks.as_bytes(), Origin::Remote).unwrap().set;
    let keys = FixedKeys {
        set,
        refetch_allowed: true,
    };
    (Authenticator::new(config, InWasm), keys, good_token())
}

#[test]
fn altered_tokens_are_always_refused_and_nothing_panics() {
    let (authenticator, keys, token) = fixture();
    let allowed = |t: &str| {
        let bearer = format!("Bearer {t}");
        let req = Request::new("GET", "/api/x", &[("authorization", &bearer)]);
        matches!(
            authenticator.decide(&req, NOW, &keys),
            Ok(Pass::Forward { .. })
        )
    };
    assert!(allowed(&token));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut refused = 0;
    for _ in 0..3000 {
        let mut altered = mutate(&mut rng, &token);
        for _ in 0..rng.below(3) {
            altered = mutate(&mut rng, &altered);
        }
        if altered == token {
            continue;
        }
        // A few edits keep the same bytes to a decoder (e.g. trailing spaces, which the
        // header syntax allows around the token); anything else must be refused.
        if altered.trim_matches(' ') == token {
            continue;
        }
        assert!(!allowed(&altered), "accepted an altered token: {altered}");
        refused += 1;
    }
    assert!(refused > 2500, "{refused}");
}

#[test]
fn random_requests_and_configurations_never_panic() {
    let (authenticator, keys, token) = fixture();
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let path = mutate(&mut rng, &format!("/api/x?access_token={token}&a=1"));
        let cookie = mutate(&mut rng, &format!("at={token}; b=2"));
        let auth = mutate(&mut rng, &format!("Bearer {token}"));
        let method = mutate(&mut rng, "POST");
        let form = mutate(&mut rng, &format!("a=1&access_token={token}&b=%41+c"));
        let content_type = mutate(&mut rng, "application/x-www-form-urlencoded");
        let headers = [
            ("content-type", content_type.as_str()),
            ("authorization", auth.as_str()),
            ("cookie", cookie.as_str()),
        ];
        let mut req = Request::new(&method, &path, &headers[..1 + rng.below(3)]);
        if authenticator.wants_body(&req, None) {
            req.set_form_body(form.as_bytes());
        }
        let _ = authenticator.decide(&req, NOW, &keys);
    }
    for text in [config_text(), policy_config_text()] {
        for _ in 0..3000 {
            let _ = Config::parse(mutate(&mut rng, &text).as_bytes());
        }
    }
    // Requests against the policies: hosts, captures, headers bound to claims.
    let policies = Authenticator::new(
        Config::parse(policy_config_text().as_bytes()).unwrap(),
        InWasm,
    );
    for _ in 0..2000 {
        let path = mutate(&mut rng, "/tenants/t1/orders/7");
        let host = mutate(&mut rng, "x.admin.test:8443");
        let tenant = mutate(&mut rng, "t1");
        let auth = format!("Bearer {token}");
        let headers = [
            (":authority", host.as_str()),
            ("x-tenant-id", tenant.as_str()),
            ("authorization", auth.as_str()),
        ];
        let req = Request::new("GET", &path, &headers);
        let _ = policies.decide_on_route(
            &req,
            Some("public-route").filter(|_| rng.below(2) == 0),
            &NoCertificate,
            NOW,
            &keys,
        );
    }
    let jwks = json!({"keys": [keys::public_jwk("rsa-a", "a")]}).to_string();
    for _ in 0..1000 {
        let _ = KeySet::parse(mutate(&mut rng, &jwks).as_bytes(), Origin::Remote);
    }
}

/// `config_text`'s rules as the upstream's routes.
const ROUTES: [Route; 2] = [
    ("/public", true, &[], Need::Nothing),
    ("/api", true, &[], Need::Scope),
];

#[test]
fn mutated_attack_paths_never_pass_where_a_family_routes_to_a_protected_route() {
    let (authenticator, keys, _) = fixture();
    let text = include_str!("../../tests/paths/cases.json");
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    let seeds: Vec<String> = doc["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["path"]
                .as_str()
                .unwrap()
                .replace("/api/public", "/public")
                .replace("/private", "/api/x")
        })
        .collect();
    let mut rng = Rng(7);
    let mut allowed = 0;
    for _ in 0..20_000 {
        let mut path = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(3) {
            path = mutate(&mut rng, &path);
        }
        let decision = authenticator.decide(&Request::new("GET", &path, &[]), NOW, &keys);
        if !matches!(decision, Ok(Pass::Forward { .. })) {
            continue;
        }
        allowed += 1;
        for family in &FAMILIES {
            if let Some((read, need)) = family_need(family, &ROUTES, "GET", &path) {
                assert!(
                    need == Need::Nothing,
                    "{path:?} allowed, but {} reads {read:?} ({need:?})",
                    family.name
                );
            }
        }
    }
    // Enough mutated paths stay public for the check to mean something.
    assert!(allowed > 400, "{allowed}");
}
