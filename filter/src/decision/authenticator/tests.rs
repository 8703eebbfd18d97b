//! Decisions end to end through the core: every rule of the README and every attack of
//! the reference list, with real signatures.

use super::*;
use crate::config::ProviderId;
use crate::jose::base64url;
use crate::jose::jwks::{KeySet, Origin};
use crate::jose::verify::InWasm;
use crate::policy::response::Reason;
use crate::testkit::{NOW, public_jwk, sign};
use serde_json::json;

/// The DPoP challenge every challenge ends with by default (`dpop.mode` `allowed`).
const DPOP_ALGS: &str =
    r#"DPoP algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 ES256K EdDSA""#;

const ISS: &str = "https://issuer.test/";
const AUD: &str = "https://api.test";

/// The quickstart, with remote keys for `auth0` and extra providers for the other cases.
fn config() -> Value {
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

const SECRET: &str = "a-32-byte-secret-for-hs256-tests!";

fn authenticator(config: &Value) -> Authenticator<InWasm> {
    Authenticator::new(
        Config::parse(config.to_string().as_bytes()).unwrap(),
        InWasm,
    )
}

/// The remote key sets, as the host side would report them.
struct Keys {
    set: Option<KeySet>,
    refetch_allowed: bool,
    unavailable: bool,
}

impl KeyStore for Keys {
    fn state(&self, _provider: ProviderId) -> KeyState<'_> {
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

fn remote_keys() -> Keys {
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

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "user-1", "exp": NOW + 3600, "iat": NOW - 10,
           "scope": "openid read:messages", "https://example.com/roles": ["admin", "ops"]})
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

fn token(claims: &Value) -> String {
    sign(
        "rsa-a",
        &json!({"alg": "RS256", "kid": "a", "typ": "JWT"}),
        claims,
    )
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request {
    Request::new("GET", path, headers)
}

fn decide(path: &str, token: &str) -> Decision {
    let bearer = format!("Bearer {token}");
    authenticator(&config()).decide(
        &get(path, &[("authorization", &bearer)]),
        NOW,
        &remote_keys(),
    )
}

/// Status and description (or 200 with no description) of a decision.
fn verdict(d: &Decision) -> (u16, String) {
    match d {
        Decision::Allow { .. } => (200, String::new()),
        Decision::Deny(r) => {
            let body: Value = serde_json::from_str(&r.denial.body).unwrap();
            (
                r.denial.status,
                body["message"].as_str().unwrap().to_string(),
            )
        }
        Decision::Pending(_) => (0, "pending".into()),
        Decision::Serve(doc) => (200, doc.body.clone()),
    }
}

fn invalid(description: &str) -> (u16, String) {
    (401, description.to_string())
}

fn changes(d: &Decision) -> &HeaderChanges {
    match d {
        Decision::Allow { changes, .. } => changes,
        other => panic!("not allowed: {other:?}"),
    }
}

fn header<'d>(d: &'d Decision, name: &str) -> Option<&'d str> {
    match d {
        Decision::Deny(r) => r
            .denial
            .headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str()),
        _ => None,
    }
}

// ---- The quickstart ----

#[test]
fn quickstart_public_private_scoped() {
    let a = authenticator(&config());
    let keys = remote_keys();
    let good = format!("Bearer {}", token(&claims()));
    let no_scope = format!(
        "Bearer {}",
        token(&with(claims(), json!({"scope": "openid"})))
    );
    let run = |path: &str, auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        verdict(&a.decide(&get(path, &headers), NOW, &keys)).0
    };
    assert_eq!(run("/api/public", None), 200);
    assert_eq!(run("/api/private", None), 401);
    assert_eq!(run("/api/private", Some(&good)), 200);
    assert_eq!(run("/api/private-scoped", None), 401);
    assert_eq!(run("/api/private-scoped", Some(&no_scope)), 403);
    assert_eq!(run("/api/private-scoped", Some(&good)), 200);
}

#[test]
fn missing_token_gets_a_bare_challenge() {
    let d = authenticator(&config()).decide(&get("/api/private", &[]), NOW, &remote_keys());
    assert_eq!(verdict(&d), (401, "Authentication required".into()));
    assert_eq!(
        header(&d, "www-authenticate"),
        Some(format!("Bearer realm=\"api\", {DPOP_ALGS}").as_str())
    );
    let Decision::Deny(r) = &d else {
        unreachable!()
    };
    // Providers are in name order: `auth0` is the first.
    assert_eq!(
        (r.denial.reason, r.provider),
        (Reason::Missing, Some(ProviderId(0)))
    );
}

#[test]
fn missing_scope_is_403_with_the_scope_attribute() {
    let d = decide(
        "/api/private-scoped",
        &token(&with(claims(), json!({"scope": "read:other"}))),
    );
    assert_eq!(verdict(&d), (403, "Insufficient Scope".into()));
    assert_eq!(
        header(&d, "www-authenticate"),
        Some(format!(
            "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"Insufficient Scope\", scope=\"read:messages\", {DPOP_ALGS}"
        ).as_str())
    );
}

#[test]
fn failed_claim_check_is_403_without_scope_attribute() {
    let d = decide(
        "/api/admin",
        &token(&with(
            claims(),
            json!({"https://example.com/roles": ["ops"]}),
        )),
    );
    assert_eq!(
        verdict(&d),
        (403, "Unexpected 'https://example.com/roles' value".into())
    );
    assert!(!header(&d, "www-authenticate").unwrap().contains("scope=\""));
    assert_eq!(verdict(&decide("/api/admin", &token(&claims()))).0, 200);
}

#[test]
fn unmatched_requests_are_refused_unless_configured() {
    let a = authenticator(&config());
    for (method, path) in [
        ("GET", "/other"),
        ("POST", "/api/private-scoped"),
        ("GET", "/api/../../x"),
        ("GET", "/api%2fprivate"),
    ] {
        let d = a.decide(&Request::new(method, path, &[]), NOW, &remote_keys());
        assert_eq!(
            verdict(&d),
            (403, "Access denied".into()),
            "{method} {path}"
        );
    }
    let open = authenticator(&with(config(), json!({"unmatched": "allow"})));
    assert_eq!(
        verdict(&open.decide(&get("/other", &[]), NOW, &remote_keys())).0,
        200
    );
    assert_eq!(
        verdict(&open.decide(&get("/api%2fprivate", &[]), NOW, &remote_keys())).0,
        403
    );
}

#[test]
fn paths_are_normalised_before_matching() {
    let a = authenticator(&config());
    for path in [
        "/api/public/../private",
        "/api//private",
        "/api/./private",
        "/api/%70rivate",
        "/api/private?x=/api/public",
    ] {
        assert_eq!(
            verdict(&a.decide(&get(path, &[]), NOW, &remote_keys())).0,
            401,
            "{path}"
        );
    }
}

#[test]
fn an_unreadable_path_is_403_and_says_why_for_the_log_only() {
    let a = authenticator(&config());
    let Decision::Deny(refusal) =
        a.decide(&get("/api/public/..;/private", &[]), NOW, &remote_keys())
    else {
        panic!("not denied")
    };
    assert_eq!(
        verdict(&Decision::Deny(refusal.clone())),
        (403, "Access denied".to_string())
    );
    assert_eq!(refusal.detail, Some("'.' or '..' with path parameters"));
    assert!(!refusal.denial.body.contains("parameters"));
    let Decision::Deny(refusal) = a.decide(&get("/api/nothing", &[]), NOW, &remote_keys()) else {
        panic!("not denied")
    };
    assert_eq!(refusal.detail, None);
}

#[test]
fn every_rule_a_reading_reaches_must_pass_and_changes_headers_once() {
    let a = authenticator(&config());
    let t = token(&claims());
    let bearer = format!("Bearer {t}");
    let hs = sign(
        SECRET,
        &json!({"alg": "HS256", "kid": "s"}),
        &with(claims(), json!({"iss": "https://hmac.test/", "aud": "h"})),
    );
    // Resolved, /all/../any/x is /any/x (auth0 with the scope, or multi); an upstream that
    // keeps `..` serves it under /all (auth0 and hmac): both must pass.
    let path = "/all/../any/x";
    let d = a.decide(
        &get(path, &[("authorization", &bearer)]),
        NOW,
        &remote_keys(),
    );
    assert_eq!(verdict(&d), (401, "Authentication required".into()));
    let both = get(path, &[("authorization", &bearer), ("x-hmac-token", &hs)]);
    let d = a.decide(&both, NOW, &remote_keys());
    // auth0's token passed two rules: its headers change once.
    assert_eq!(
        changes(&d).remove,
        vec!["authorization".to_string(), "x-hmac-token".to_string()]
    );
    assert_eq!(
        changes(&d)
            .set
            .iter()
            .filter(|(h, _)| h == "x-user-id")
            .count(),
        1
    );
}

// ---- Claims ----

#[test]
fn claim_failures_are_401_invalid_token() {
    let cases = [
        (
            json!({"exp": NOW - 10}),
            "'exp' claim timestamp check failed",
        ),
        (json!({"exp": null}), "Missing 'exp' claim"),
        (
            json!({"exp": (NOW + 60).to_string()}),
            "'exp' claim must be a number",
        ),
        (json!({"exp": -1}), "'exp' claim timestamp check failed"),
        (
            json!({"nbf": NOW + 60}),
            "'nbf' claim timestamp check failed",
        ),
        (
            json!({"iat": NOW + 60}),
            "'iat' claim timestamp check failed",
        ),
        (
            json!({"aud": "https://other.test"}),
            "Unexpected 'aud' value",
        ),
        (json!({"aud": []}), "Unexpected 'aud' value"),
        (json!({"aud": [1]}), "Unexpected 'aud' value"),
        (json!({"aud": "https://api.tes"}), "Unexpected 'aud' value"),
        (
            json!({"aud": "https://api.test "}),
            "Unexpected 'aud' value",
        ),
        (json!({"aud": null}), "Missing 'aud' claim"),
        (
            json!({"iss": "https://issuer.test"}),
            "Unexpected 'iss' value",
        ),
        (json!({"iss": null}), "Missing 'iss' claim"),
        (json!({"sub": 1}), "'sub' claim must be a string"),
    ];
    for (change, want) in cases {
        let d = decide("/api/private", &token(&with(claims(), change.clone())));
        assert_eq!(verdict(&d), invalid(want), "{change}");
        assert!(
            header(&d, "www-authenticate")
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
    }
}

#[test]
fn expiry_is_reported_as_expired() {
    let d = decide(
        "/api/private",
        &token(&with(claims(), json!({"exp": NOW - 10}))),
    );
    let Decision::Deny(r) = d else { panic!() };
    assert_eq!(r.denial.reason, Reason::Expired);
}

#[test]
fn huge_times_do_not_overflow() {
    for exp in [json!(1e308), json!(18446744073709551616.0), json!(u64::MAX)] {
        assert_eq!(
            verdict(&decide(
                "/api/private",
                &token(&with(claims(), json!({"exp": exp.clone()})))
            ))
            .0,
            200,
            "{exp}"
        );
    }
}

// ---- Signatures and keys ----

#[test]
fn tampered_signatures_fail() {
    let good = token(&claims());
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut bytes = base64url::decode(sig).unwrap();
    bytes[10] ^= 1;
    let flipped = format!("{input}.{}", base64url::encode(&bytes));
    assert_eq!(
        verdict(&decide("/api/private", &flipped)),
        invalid("signature verification failed")
    );
    let truncated = format!("{input}.{}", base64url::encode(&bytes[..255]));
    assert_eq!(
        verdict(&decide("/api/private", &truncated)),
        invalid("signature verification failed")
    );
    assert_eq!(
        verdict(&decide("/api/private", &format!("{input}."))),
        invalid("Missing signature")
    );
    assert_eq!(
        verdict(&decide("/api/private", input)).1,
        "Invalid Compact JWS"
    );
    // Another payload under the original signature.
    let other = token(&with(claims(), json!({"sub": "admin"})));
    let forged = format!("{}.{sig}", &other[..other.rfind('.').unwrap()]);
    assert_eq!(
        verdict(&decide("/api/private", &forged)),
        invalid("signature verification failed")
    );
}

#[test]
fn alg_none_is_refused_in_every_spelling() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let input = format!(
            "{}.{}",
            base64url::encode(json!({"alg": alg, "kid": "a"}).to_string().as_bytes()),
            base64url::encode(claims().to_string().as_bytes())
        );
        for t in [format!("{input}."), input.clone(), format!("{input}.c2ln")] {
            assert_eq!(verdict(&decide("/api/private", &t)).0, 401, "{alg} {t}");
        }
    }
}

#[test]
fn key_confusion_hmac_with_the_public_key_fails() {
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&crate::testkit::pem("rsa-a")).unwrap();
    let public = private.to_public_key();
    let jwk = public_jwk("rsa-a", "a");
    let secrets = [
        public
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap(),
        String::from_utf8_lossy(public.to_public_key_der().unwrap().as_bytes()).into_owned(),
        jwk["n"].as_str().unwrap().to_string(),
        jwk.to_string(),
    ];
    for secret in secrets {
        let t = sign(&secret, &json!({"alg": "HS256", "kid": "a"}), &claims());
        assert_eq!(
            verdict(&decide("/api/private", &t)),
            invalid("Unexpected 'alg' value")
        );
    }
    // A provider that does accept HS256 never uses an RSA key for it.
    let t = sign(
        "rsa-b",
        &json!({"alg": "RS256", "kid": "s"}),
        &with(claims(), json!({"iss": "https://hmac.test/", "aud": "h"})),
    );
    let d = authenticator(&config()).decide(
        &get("/hmac", &[("x-hmac-token", &t)]),
        NOW,
        &remote_keys(),
    );
    assert_eq!(verdict(&d), invalid("Unexpected 'alg' value"));
}

#[test]
fn kid_tricks() {
    let keys_with_refetch = Keys {
        refetch_allowed: true,
        ..remote_keys()
    };
    let a = authenticator(&config());
    for kid in [
        json!("../../../../etc/passwd"),
        json!("a' OR '1'='1"),
        json!("b"),
    ] {
        let t = sign("rsa-a", &json!({"alg": "RS256", "kid": kid}), &claims());
        let bearer = format!("Bearer {t}");
        let req = get("/api/private", &[("authorization", &bearer)]);
        assert_eq!(
            verdict(&a.decide(&req, NOW, &remote_keys())),
            invalid("no applicable key found in the JSON Web Key Set")
        );
        // An unknown kid may trigger one refetch (the host enforces the cooldown).
        assert_eq!(
            a.decide(&req, NOW, &keys_with_refetch),
            Decision::Pending(NeedKeys {
                provider: ProviderId(0),
                unknown_kid: true
            })
        );
    }
    for kid in [json!(1), json!(["a"]), json!({"k": "a"}), json!(null)] {
        let t = sign("rsa-a", &json!({"alg": "RS256", "kid": kid}), &claims());
        assert_eq!(
            verdict(&decide("/api/private", &t)),
            invalid("Invalid 'kid' header parameter"),
            "{kid}"
        );
    }
    let long = sign(
        "rsa-a",
        &json!({"alg": "RS256", "kid": "k".repeat(10_000)}),
        &claims(),
    );
    assert_eq!(
        verdict(&decide("/api/private", &long)),
        invalid("Token too large")
    );
    // No kid: fine when the set has exactly one key that fits.
    let t = sign("rsa-a", &json!({"alg": "RS256"}), &claims());
    assert_eq!(verdict(&decide("/api/private", &t)).0, 200);
}

#[test]
fn keys_named_by_the_token_are_never_used() {
    // Signed by rsa-b, which the issuer never published, and pointing at it every way.
    let attacker = public_jwk("rsa-b", "a");
    let header = json!({"alg": "RS256", "kid": "a", "jku": "http://evil.test/jwks", "x5u": "http://evil.test/cert",
                        "x5c": ["MIIB"], "jwk": attacker});
    let t = sign("rsa-b", &header, &claims());
    let keys_with_refetch = Keys {
        refetch_allowed: true,
        ..remote_keys()
    };
    let bearer = format!("Bearer {t}");
    let d = authenticator(&config()).decide(
        &get("/api/private", &[("authorization", &bearer)]),
        NOW,
        &keys_with_refetch,
    );
    assert_eq!(verdict(&d), invalid("signature verification failed"));
}

#[test]
fn psychic_and_malformed_ecdsa_signatures_fail() {
    let c = with(claims(), json!({"iss": "https://multi.test/", "aud": "m"}));
    let good = sign("ec256", &json!({"alg": "ES256", "kid": "ec"}), &c);
    let input = &good[..good.rfind('.').unwrap()];
    let n = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let mut n_minus_1 = n.clone();
    n_minus_1[31] -= 1;
    let scalar = |b: u8| {
        let mut v = vec![0u8; 32];
        v[31] = b;
        v
    };
    let (zero, one) = (scalar(0), scalar(1));
    let mut sigs: Vec<Vec<u8>> = Vec::new();
    for r in [&zero, &one, &n_minus_1, &n] {
        for s in [&zero, &one, &n_minus_1, &n] {
            sigs.push([r.as_slice(), s.as_slice()].concat());
        }
    }
    // The valid signature in DER instead of JOSE's r || s.
    let raw = base64url::decode(&good[good.rfind('.').unwrap() + 1..]).unwrap();
    let der = p256::ecdsa::Signature::from_slice(&raw).unwrap().to_der();
    sigs.push(der.as_bytes().to_vec());
    let a = authenticator(&config());
    for sig in sigs {
        let t = format!("{input}.{}", base64url::encode(&sig));
        let bearer = format!("Bearer {t}");
        let d = a.decide(
            &get("/multi", &[("authorization", &bearer)]),
            NOW,
            &remote_keys(),
        );
        assert_eq!(verdict(&d), invalid("signature verification failed"));
    }
    let bearer = format!("Bearer {good}");
    assert_eq!(
        verdict(&a.decide(
            &get("/multi", &[("authorization", &bearer)]),
            NOW,
            &remote_keys()
        ))
        .0,
        200
    );
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn every_supported_algorithm_verifies_with_its_own_key_only() {
    let c = with(claims(), json!({"iss": "https://multi.test/", "aud": "m"}));
    let a = authenticator(&config());
    let run = |t: &str| {
        let bearer = format!("Bearer {t}");
        verdict(&a.decide(
            &get("/multi", &[("authorization", &bearer)]),
            NOW,
            &remote_keys(),
        ))
    };
    for (key, alg, kid) in [
        ("ec256", "ES256", "ec"),
        ("ed25519", "EdDSA", "ed"),
        ("rsa-b", "PS256", "rsa"),
        ("rsa-b", "RS256", "rsa"),
    ] {
        assert_eq!(
            run(&sign(key, &json!({"alg": alg, "kid": kid}), &c)).0,
            200,
            "{alg}"
        );
        assert_eq!(
            run(&sign(key, &json!({"alg": alg}), &c)).0,
            200,
            "{alg} without kid"
        );
    }
    // Algorithms outside the provider's list, and keys of another type for the kid.
    assert_eq!(
        run(&sign("rsa-b", &json!({"alg": "PS384", "kid": "rsa"}), &c)),
        invalid("Unexpected 'alg' value")
    );
    assert_eq!(
        run(&sign("ec256", &json!({"alg": "ES256", "kid": "rsa"}), &c)),
        invalid("no applicable key found in the JSON Web Key Set")
    );
    let hs = sign(
        SECRET,
        &json!({"alg": "HS256", "kid": "s"}),
        &with(claims(), json!({"iss": "https://hmac.test/", "aud": "h"})),
    );
    assert_eq!(
        verdict(&a.decide(&get("/hmac", &[("x-hmac-token", &hs)]), NOW, &remote_keys())).0,
        200
    );
}

// ---- Header rules and format attacks ----

#[test]
fn format_attacks_fail_before_crypto() {
    let b64 = |v: &Value| base64url::encode(v.to_string().as_bytes());
    let payload = b64(&claims());
    let good = token(&claims());
    let (head, sig) = good
        .split_once('.')
        .map(|(h, rest)| (h, rest.rsplit_once('.').unwrap().1))
        .unwrap();
    let cases = [
        (
            format!(
                "{}.{payload}.{sig}",
                b64(&json!({"alg": "RS256", "kid": "a", "crit": ["exp"]}))
            ),
            "Unsupported 'crit' header parameter",
        ),
        (
            format!(
                "{}.{payload}.{sig}",
                b64(&json!({"alg": "RS256", "kid": "a", "b64": false}))
            ),
            "Unencoded payloads ('b64') are not accepted",
        ),
        (
            format!(
                "{}.{payload}.{sig}",
                b64(&json!({"alg": "RS256", "kid": "a", "cty": "JWT"}))
            ),
            "Nested tokens are not accepted",
        ),
        (
            format!(
                "{}.{payload}.{sig}",
                base64url::encode(br#"{"alg":"RS256","kid":"a","alg":"RS256"}"#)
            ),
            "Invalid Compact JWS",
        ),
        (
            format!(
                "{head}.{}.{sig}",
                base64url::encode(br#"{"sub":"a","sub":"b"}"#)
            ),
            "Invalid JWT Claims Set",
        ),
        (format!("{head}.{payload}.{sig}.x"), "Invalid Compact JWS"),
        // Padding at the end is b64token syntax, but not canonical base64url.
        (format!("{head}.{payload}.{sig}="), "Invalid Compact JWS"),
    ];
    // Every format attack is refused before any signature is checked.
    let calls = std::cell::Cell::new(0);
    let a = counting(&calls);
    let run = |t: &str| {
        let bearer = format!("Bearer {t}");
        verdict(&a.decide(
            &get("/api/private", &[("authorization", &bearer)]),
            NOW,
            &remote_keys(),
        ))
    };
    for (t, want) in cases {
        assert_eq!(run(&t), invalid(want), "{want}");
    }
    // '=' before the end is outside b64token: a malformed request, refused before parsing.
    for t in [
        format!("{head}.{payload}={sig}"),
        format!("{head}=.{payload}.{sig}"),
    ] {
        assert_eq!(run(&t), (400, "Malformed access token".into()), "{t}");
    }
    assert_eq!(calls.get(), 0, "no format attack reached the verifier");
    assert_eq!(run(&good), (200, String::new()));
    assert_eq!(calls.get(), 1, "the counting verifier counts");
    // A JWE with five parts, and the JSON serialization.
    let jwe = format!(
        "{}.a.b.c.d",
        b64(&json!({"alg": "RSA-OAEP", "enc": "A128GCM"}))
    );
    assert_eq!(
        verdict(&decide("/api/private", &jwe)),
        invalid("Encrypted tokens (JWE) are not accepted")
    );
    let json_serialized = format!("Bearer {{\"payload\":\"{payload}\"}}");
    let d = authenticator(&config()).decide(
        &get("/api/private", &[("authorization", &json_serialized)]),
        NOW,
        &remote_keys(),
    );
    assert_eq!(verdict(&d).0, 400);
}

#[test]
fn non_canonical_base64url_is_refused() {
    let good = token(&claims());
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut last = sig.to_string();
    // Flip the unused low bits of the final character: same bytes to a lenient decoder.
    let c = last.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let i = alphabet.find(c).unwrap();
    last.push(alphabet.as_bytes()[i ^ 1] as char);
    assert_eq!(
        verdict(&decide("/api/private", &format!("{input}.{last}"))),
        invalid("Invalid Compact JWS")
    );
    let standard = format!("{input}.{}", sig.replace('-', "+").replace('_', "/"));
    if standard != good {
        assert_eq!(
            verdict(&decide("/api/private", &standard)),
            invalid("Invalid Compact JWS")
        );
    }
}

#[test]
fn huge_tokens_are_refused_quickly() {
    for t in [".".repeat(1 << 20), "a".repeat(64 * 1024)] {
        assert_eq!(
            verdict(&decide("/api/private", &t)),
            invalid("Token too large")
        );
    }
    // Within a larger bound, 10,000 nested brackets are refused by the depth limit.
    let big = authenticator(&with(config(), json!({"max_token_bytes": 65536})));
    let header = base64url::encode(json!({"alg": "RS256", "kid": "a"}).to_string().as_bytes());
    let t = format!(
        "{header}.{}.c2ln",
        base64url::encode("[".repeat(10_000).as_bytes())
    );
    let bearer = format!("Bearer {t}");
    assert_eq!(
        verdict(&big.decide(
            &get("/api/private", &[("authorization", &bearer)]),
            NOW,
            &remote_keys()
        )),
        invalid("Invalid JWT Claims Set")
    );
}

#[test]
fn more_than_one_token_is_400() {
    let t = token(&claims());
    let bearer = format!("Bearer {t}");
    let req = Request::new(
        "GET",
        &format!("/multi?access_token={t}"),
        &[("authorization", &bearer)],
    );
    let d = authenticator(&config()).decide(&req, NOW, &remote_keys());
    assert_eq!(
        verdict(&d),
        (400, "More than one method used for authentication".into())
    );
    assert!(
        header(&d, "www-authenticate")
            .unwrap()
            .contains("error=\"invalid_request\"")
    );
}

// ---- Optional authentication, any / all ----

#[test]
fn allow_missing_lets_anonymous_through_but_not_bad_tokens() {
    let a = authenticator(&config());
    assert_eq!(
        verdict(&a.decide(&get("/api/optional", &[]), NOW, &remote_keys())).0,
        200
    );
    let expired = format!(
        "Bearer {}",
        token(&with(claims(), json!({"exp": NOW - 60})))
    );
    let d = a.decide(
        &get("/api/optional", &[("authorization", &expired)]),
        NOW,
        &remote_keys(),
    );
    assert_eq!(verdict(&d).0, 401);
}

#[test]
fn any_passes_on_one_and_reports_the_furthest_failure() {
    let a = authenticator(&config());
    let run = |t: &str| {
        let bearer = format!("Bearer {t}");
        verdict(&a.decide(
            &get("/any", &[("authorization", &bearer)]),
            NOW,
            &remote_keys(),
        ))
    };
    assert_eq!(run(&token(&claims())).0, 200);
    let multi = sign(
        "rsa-b",
        &json!({"alg": "RS256", "kid": "rsa"}),
        &with(claims(), json!({"iss": "https://multi.test/", "aud": "m"})),
    );
    assert_eq!(run(&multi).0, 200);
    // Valid for auth0 but without the scope: the scope failure is the answer.
    assert_eq!(
        run(&token(&with(claims(), json!({"scope": ""})))),
        (403, "Insufficient Scope".into())
    );
    let d = a.decide(&get("/any", &[]), NOW, &remote_keys());
    assert_eq!(verdict(&d).0, 401);
}

#[test]
fn all_needs_every_provider() {
    let a = authenticator(&config());
    let bearer = format!("Bearer {}", token(&claims()));
    let hs = sign(
        SECRET,
        &json!({"alg": "HS256", "kid": "s"}),
        &with(claims(), json!({"iss": "https://hmac.test/", "aud": "h"})),
    );
    let both = get("/all", &[("authorization", &bearer), ("x-hmac-token", &hs)]);
    assert_eq!(verdict(&a.decide(&both, NOW, &remote_keys())).0, 200);
    let one = get("/all", &[("authorization", &bearer)]);
    assert_eq!(verdict(&a.decide(&one, NOW, &remote_keys())).0, 401);
    // While auth0's keys load, a definite failure of the other still answers at once.
    let loading = Keys {
        set: None,
        refetch_allowed: false,
        unavailable: false,
    };
    assert_eq!(verdict(&a.decide(&one, NOW, &loading)).0, 401);
    assert_eq!(
        a.decide(&both, NOW, &loading),
        Decision::Pending(NeedKeys {
            provider: ProviderId(0),
            unknown_kid: false
        })
    );
}

// ---- Key availability ----

#[test]
fn missing_keys_pause_or_fail_closed_with_503() {
    let a = authenticator(&config());
    let bearer = format!("Bearer {}", token(&claims()));
    let req = get("/api/private", &[("authorization", &bearer)]);
    let loading = Keys {
        set: None,
        refetch_allowed: false,
        unavailable: false,
    };
    assert_eq!(
        a.decide(&req, NOW, &loading),
        Decision::Pending(NeedKeys {
            provider: ProviderId(0),
            unknown_kid: false
        })
    );
    let down = Keys {
        set: None,
        refetch_allowed: false,
        unavailable: true,
    };
    let d = a.decide(&req, NOW, &down);
    assert_eq!(verdict(&d).0, 503);
    let Decision::Deny(r) = &d else {
        unreachable!()
    };
    assert!(r.denial.headers.contains(&("retry-after", "30".into())));
    assert!(r.denial.body.contains("temporarily_unavailable"));
    // Public routes and missing tokens never wait for keys.
    assert_eq!(
        verdict(&a.decide(&get("/api/public", &[]), NOW, &loading)).0,
        200
    );
    assert_eq!(
        verdict(&a.decide(&get("/api/private", &[]), NOW, &loading)).0,
        401
    );
    // A token for another issuer triggers no fetch either.
    let other = format!(
        "Bearer {}",
        token(&with(claims(), json!({"iss": "https://evil.test/"})))
    );
    assert_eq!(
        verdict(&a.decide(
            &get("/api/private", &[("authorization", &other)]),
            NOW,
            &loading
        ))
        .0,
        401
    );
}

// ---- Header changes ----

#[test]
fn success_strips_spoofed_identity_and_adds_claims() {
    let t = token(&claims());
    let bearer = format!("Bearer {t}");
    let a = authenticator(&config());
    let req = get(
        "/api/private",
        &[("authorization", &bearer), ("x-user-id", "spoofed")],
    );
    let d = a.decide(&req, NOW, &remote_keys());
    let c = changes(&d);
    // Identity headers the request carries go (absent ones need no host call), then the token.
    assert_eq!(c.remove, vec!["x-user-id", "authorization"]);
    let payload = t.split('.').nth(1).unwrap();
    assert_eq!(
        c.set,
        vec![
            ("x-jwt-payload".to_string(), payload.to_string()),
            ("x-user-id".to_string(), "user-1".to_string()),
            ("x-roles".to_string(), "admin,ops".to_string()),
        ]
    );
    // Public routes strip identity headers too, and leave the rest alone.
    let d = a.decide(
        &get("/api/public", &[("x-user-id", "spoofed")]),
        NOW,
        &remote_keys(),
    );
    assert_eq!(
        changes(&d),
        &HeaderChanges {
            remove: vec!["x-user-id".into()],
            ..HeaderChanges::default()
        }
    );
    let spoofed = [
        ("x-roles", "admin"),
        ("x-jwt-payload", "e30"),
        ("x-user-id", "root"),
    ];
    let d = a.decide(&get("/api/public", &spoofed), NOW, &remote_keys());
    // In the order the request carries them.
    assert_eq!(
        changes(&d).remove,
        vec!["x-roles", "x-jwt-payload", "x-user-id"]
    );
}

#[test]
fn identity_headers_are_stripped_in_every_spelling_an_upstream_folds() {
    let a = authenticator(&config());
    let bearer = format!("Bearer {}", token(&claims()));
    // Names arrive lower-cased (`Request`); `_`, `.` and other symbols fold into `-`.
    let spoofed = [
        ("x_user_id", "admin"),
        ("x-user_id", "admin"),
        ("x.user.id", "admin"),
        ("x_user_id", "root"),
        ("x_jwt_payload", "e30"),
        ("x~roles", "admin"),
        ("x-user-ids", "kept"),
        ("xuserid", "kept"),
        ("x-other", "kept"),
    ];
    let removed = vec![
        "x_user_id",
        "x-user_id",
        "x.user.id",
        "x_jwt_payload",
        "x~roles",
    ];
    let mut headers = spoofed.to_vec();
    headers.push(("authorization", &bearer));
    for (path, headers) in [
        ("/api/public", &spoofed[..]),
        ("/api/private", &headers[..]),
    ] {
        let d = a.decide(&get(path, headers), NOW, &remote_keys());
        let remove = &changes(&d).remove;
        assert_eq!(remove[..removed.len()], removed[..], "{path}");
        // What the filter writes is written after the removals, in its own spelling.
        if path == "/api/private" {
            assert!(
                changes(&d)
                    .set
                    .contains(&("x-user-id".into(), "user-1".into()))
            );
        }
    }
    // Report mode, denied: the request goes on, stripped all the same.
    let report = authenticator(&with(config(), json!({"mode": "report"})));
    let d = report.decide(&get("/api/private", &spoofed), NOW, &remote_keys());
    assert!(matches!(
        &d,
        Decision::Allow {
            reported: Some(_),
            ..
        }
    ));
    assert_eq!(changes(&d).remove, removed);
    // A CORS preflight passed unchecked strips them too.
    let pass = authenticator(&with(config(), json!({"cors_preflight": "pass"})));
    let mut preflight = spoofed.to_vec();
    preflight.extend([
        ("origin", "https://app.test"),
        ("access-control-request-method", "GET"),
    ]);
    let d = pass.decide(
        &Request::new("OPTIONS", "/api/private", &preflight),
        NOW,
        &remote_keys(),
    );
    assert_eq!(changes(&d).remove, removed);
    // Without identity headers configured, nothing is removed.
    let mut bare = config();
    for p in ["claim_to_headers", "forward_payload_header"] {
        bare["providers"]["auth0"]
            .as_object_mut()
            .unwrap()
            .remove(p);
    }
    let d = authenticator(&bare).decide(&get("/api/public", &spoofed), NOW, &remote_keys());
    assert!(changes(&d).remove.is_empty());
}

#[test]
fn long_identity_names_are_compared_too() {
    // Names of 63 bytes and more share one length bit: they are compared in full.
    let long = format!("x-{}", "a".repeat(68));
    let mut cfg = config();
    cfg["providers"]["auth0"]["forward_payload_header"] = json!(long);
    let a = authenticator(&cfg);
    let folded = long.replace('-', "_");
    let other = format!("x_{}", "a".repeat(61));
    let d = a.decide(
        &get(
            "/api/public",
            &[(&folded, "e30"), (&other, "kept"), (&long, "e30")],
        ),
        NOW,
        &remote_keys(),
    );
    assert_eq!(changes(&d).remove, vec![folded, long]);
}

#[test]
fn an_identity_spelling_whose_value_is_not_utf8_is_refused_like_the_header_itself() {
    let a = authenticator(&config());
    for name in [&b"X-User-Id"[..], b"X_User_Id", b"x.user.id"] {
        let req = get_bytes("/api/public", &[(name, b"\xff")]);
        assert_eq!(
            verdict(&a.decide(&req, NOW, &remote_keys())),
            (400, UNDECODABLE.to_string()),
            "{}",
            String::from_utf8_lossy(name)
        );
    }
    // In report mode it goes on, without it.
    let report = authenticator(&with(config(), json!({"mode": "report"})));
    let req = get_bytes("/api/public", &[(b"X_User_Id", b"\xff")]);
    assert_eq!(
        changes(&report.decide(&req, NOW, &remote_keys())).remove,
        vec!["x_user_id"]
    );
    // A header no upstream reads as an identity is ignored as before.
    let req = get_bytes("/api/public", &[(b"X-User-Ids", b"\xff")]);
    assert_eq!(verdict(&a.decide(&req, NOW, &remote_keys())).0, 200);
}

#[test]
fn forward_keeps_the_token_and_other_sources_are_cut_out() {
    let mut cfg = config();
    cfg["providers"]["auth0"]["forward"] = json!(true);
    let bearer = format!("Bearer {}", token(&claims()));
    let d = authenticator(&cfg).decide(
        &get("/api/private", &[("authorization", &bearer)]),
        NOW,
        &remote_keys(),
    );
    assert!(!changes(&d).remove.contains(&"authorization".to_string()));

    let t = sign(
        "rsa-b",
        &json!({"alg": "RS256", "kid": "rsa"}),
        &with(claims(), json!({"iss": "https://multi.test/", "aud": "m"})),
    );
    let req = get(&format!("/multi/x?a=1&access_token={t}"), &[]);
    let d = authenticator(&config()).decide(&req, NOW, &remote_keys());
    assert!(
        changes(&d)
            .set
            .contains(&(":path".into(), "/multi/x?a=1".into()))
    );
}

#[test]
fn arrays_are_written_only_when_their_list_reads_back_the_same() {
    let roles = |v: Value| header_value(&v);
    // Well-formed lists as before: elements joined with `,`.
    assert_eq!(roles(json!(["admin", "ops"])).as_deref(), Some("admin,ops"));
    assert_eq!(
        roles(json!([1, true, "a b"])).as_deref(),
        Some("1,true,a b")
    );
    assert_eq!(roles(json!([])).as_deref(), Some(""));
    // Any element that a list parser would split, drop, trim or unquote: not written.
    for ambiguous in [
        json!(["user", "admin,root"]),
        json!(["a", ""]),
        json!([""]),
        json!([" a"]),
        json!(["a "]),
        json!(["a\u{a0}"]),
        json!(["\"a", "b\""]),
        json!(["a", null]),
        json!(["a", ["b"]]),
    ] {
        assert_eq!(roles(ambiguous.clone()), None, "{ambiguous}");
    }
    // A string claim is written as it is, commas included.
    assert_eq!(roles(json!("Doe, John")).as_deref(), Some("Doe, John"));
    // Through a decision: headers and properties alike.
    let mut cfg = config();
    cfg["providers"]["auth0"]["claim_to_properties"] =
        json!([{"claim": ["https://example.com/roles"], "property": "jwt_roles"}]);
    let a = authenticator(&cfg);
    for (claim, written) in [
        (json!(["user", "admin", "root"]), Some("user,admin,root")),
        (json!(["user", "admin,root"]), None),
        (json!(["user", ""]), None),
    ] {
        let t = token(&with(
            claims(),
            json!({ "https://example.com/roles": claim }),
        ));
        let bearer = format!("Bearer {t}");
        let d = a.decide(
            &get(
                "/api/private",
                &[("authorization", &bearer), ("x-roles", "x")],
            ),
            NOW,
            &remote_keys(),
        );
        let c = changes(&d);
        let header = c
            .set
            .iter()
            .find(|(h, _)| h == "x-roles")
            .map(|(_, v)| v.as_str());
        let property = c
            .properties
            .iter()
            .find(|(p, _)| p == "jwt_roles")
            .map(|(_, v)| v.as_str());
        assert_eq!((header, property), (written, written), "{claim}");
        // The spoofed one is stripped either way.
        assert!(c.remove.contains(&"x-roles".to_string()));
    }
}

#[test]
fn claims_that_cannot_be_header_values_are_not_written() {
    let c = with(
        claims(),
        json!({"sub": "a\r\nx-admin: 1", "https://example.com/roles": {"nested": true}}),
    );
    let d = decide("/api/private", &token(&c));
    assert_eq!(
        changes(&d).set.len(),
        1,
        "only the payload header: {:?}",
        changes(&d).set
    );
}

// ---- Header values that are not UTF-8 ----

/// A GET of `path` as the host hands it over: `extra` pairs as raw bytes.
fn get_bytes(path: &str, extra: &[(&[u8], &[u8])]) -> Request {
    let mut pairs: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":path", path.as_bytes()),
        (b":authority", b"api.test"),
    ];
    pairs.extend_from_slice(extra);
    Request::from_pairs(&pairs)
}

#[test]
fn undecodable_values_the_filter_reads_or_strips_are_400_on_every_route() {
    let a = authenticator(&config());
    let bearer = format!("Bearer {}", token(&claims()));
    let refused = (400, UNDECODABLE.to_string());
    let bad: &[u8] = b"Bearer \xff";
    for (name, value) in [
        (&b"authorization"[..], bad),
        (b"x-hmac-token", b"\xc3\x28"),
        (b"cookie", b"at=\xfe"),
        (b"x-user-id", b"\x80"),
        (b"x-jwt-payload", b"\xff"),
        (b":authority", b"h\xffst"),
        // Read next to `:authority` for DPoP proofs (no `dpop.origin` here).
        (b"host", b"h\xffst"),
        (b":method", b"G\xffT"),
        (b":path", b"/api/public/\xff"),
        (b"x-http-method-override", b"DEL\xffTE"),
    ] {
        for path in ["/api/public", "/api/private"] {
            let req = get_bytes(
                path,
                &[(b"authorization", bearer.as_bytes()), (name, value)],
            );
            let d = a.decide(&req, NOW, &remote_keys());
            assert_eq!(
                verdict(&d),
                refused,
                "{} on {path}",
                String::from_utf8_lossy(name)
            );
            assert_eq!(
                header(&d, "www-authenticate"),
                Some(format!(r#"Bearer realm="api", error="invalid_request", error_description="{UNDECODABLE}""#).as_str())
            );
        }
    }
}

#[test]
fn an_undecodable_host_header_is_ignored_where_the_authority_is_never_read() {
    let mut c = config();
    for provider in c["providers"].as_object_mut().unwrap().values_mut() {
        provider["dpop"] = json!({"mode": "disabled"});
    }
    c["rules"] = json!([{"match": {"prefix": "/api/public"}}]);
    let req = get_bytes("/api/public", &[(b"host", b"h\xffst")]);
    assert_eq!(
        verdict(&authenticator(&c).decide(&req, NOW, &remote_keys())),
        (200, String::new())
    );
    // With a rule that names hosts, it is read.
    c["rules"] = json!([{"match": {"prefix": "/api/public", "hosts": ["api.test"]}}]);
    assert_eq!(
        verdict(&authenticator(&c).decide(&req, NOW, &remote_keys())),
        (400, UNDECODABLE.to_string())
    );
}

#[test]
fn an_undecodable_method_override_is_ignored_when_no_rule_depends_on_the_method() {
    let mut c = config();
    c["rules"] = json!([{"match": {"prefix": "/api/public"}}]);
    let a = authenticator(&c);
    let req = get_bytes("/api/public", &[(b"x-http-method-override", b"DEL\xffTE")]);
    assert_eq!(
        verdict(&a.decide(&req, NOW, &remote_keys())),
        (200, String::new())
    );
}

#[test]
fn other_undecodable_values_are_decided_as_if_absent() {
    let a = authenticator(&config());
    let bearer = format!("Bearer {}", token(&claims()));
    let foo: (&[u8], &[u8]) = (b"x-foo", b"\xff\xfe");
    let name: (&[u8], &[u8]) = (b"x-\xff", b"value");
    for extra in [foo, name] {
        let d = a.decide(&get_bytes("/api/public", &[extra]), NOW, &remote_keys());
        assert_eq!(verdict(&d), (200, String::new()));
        assert_eq!(changes(&d), &HeaderChanges::default());
        let d = a.decide(&get_bytes("/api/private", &[extra]), NOW, &remote_keys());
        assert_eq!(verdict(&d), (401, "Authentication required".to_string()));
        let d = a.decide(
            &get_bytes(
                "/api/private",
                &[extra, (b"authorization", bearer.as_bytes())],
            ),
            NOW,
            &remote_keys(),
        );
        assert_eq!(verdict(&d), (200, String::new()));
        assert!(!changes(&d).remove.contains(&"x-foo".to_string()));
    }
}

// ---- Report mode ----

#[test]
fn report_mode_lets_denials_through_and_reports_them() {
    let a = authenticator(&with(config(), json!({"mode": "report"})));
    let d = a.decide(
        &get("/api/private", &[("x-user-id", "spoofed")]),
        NOW,
        &remote_keys(),
    );
    let Decision::Allow {
        changes,
        reported: Some(r),
        ..
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(r.denial.reason, Reason::Missing);
    assert!(changes.remove.contains(&"x-user-id".to_string()));

    // An identity header the filter cannot read is still stripped.
    let d = a.decide(
        &get_bytes("/api/public", &[(b"x-user-id", b"\xff")]),
        NOW,
        &remote_keys(),
    );
    let Decision::Allow {
        changes,
        reported: Some(r),
        ..
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(r.denial.reason, Reason::InvalidRequest);
    assert_eq!(changes.remove, vec!["x-user-id"]);
}

// ---- The verified-token cache ----

/// The in-wasm verifier, counting its calls.
struct Counting<'c>(&'c std::cell::Cell<u32>);

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

fn counting(calls: &std::cell::Cell<u32>) -> Authenticator<Counting<'_>> {
    Authenticator::new(
        Config::parse(config().to_string().as_bytes()).unwrap(),
        Counting(calls),
    )
}

#[test]
fn a_cached_token_is_not_verified_again_but_still_checked() {
    let calls = std::cell::Cell::new(0);
    let a = counting(&calls);
    let keys = remote_keys();
    let bearer = format!(
        "Bearer {}",
        token(&with(claims(), json!({"scope": "openid", "exp": NOW + 60})))
    );
    let req = |path: &str| get(path, &[("authorization", &bearer)]);
    assert_eq!(verdict(&a.decide(&req("/api/private"), NOW, &keys)).0, 200);
    assert_eq!(verdict(&a.decide(&req("/api/private"), NOW, &keys)).0, 200);
    assert_eq!((calls.get(), a.take_cache_counts()), (1, (1, 1)));
    // Route authorization runs on a hit...
    assert_eq!(
        verdict(&a.decide(&req("/api/private-scoped"), NOW, &keys)).0,
        403
    );
    // ...and so do the time checks (with the clock skew), and the hit changes nothing.
    assert_eq!(
        verdict(&a.decide(&req("/api/private"), NOW + 64, &keys)).0,
        200
    );
    assert_eq!(calls.get(), 1);
    assert_eq!(
        verdict(&a.decide(&req("/api/private"), NOW + 65, &keys)),
        invalid("'exp' claim timestamp check failed")
    );
}

#[test]
fn a_rotated_key_evicts_the_tokens_it_signed() {
    let calls = std::cell::Cell::new(0);
    let a = counting(&calls);
    let bearer = format!("Bearer {}", token(&claims()));
    let req = get("/api/private", &[("authorization", &bearer)]);
    assert_eq!(verdict(&a.decide(&req, NOW, &remote_keys())).0, 200);
    let set = |jwk: Value| Keys {
        set: Some(
            KeySet::parse(
                json!({"keys": [jwk]}).to_string().as_bytes(),
                Origin::Remote,
            )
            .unwrap()
            .set,
        ),
        refetch_allowed: false,
        unavailable: false,
    };
    // Key "a" removed: the cached verification no longer counts.
    let rotated = set(public_jwk("rsa-b", "b"));
    assert_eq!(
        verdict(&a.decide(&req, NOW, &rotated)),
        invalid("no applicable key found in the JSON Web Key Set")
    );
    // Key "a" replaced by other material under the same kid: verified again, and fails.
    let replaced = set(public_jwk("rsa-b", "a"));
    assert_eq!(
        verdict(&a.decide(&req, NOW, &replaced)),
        invalid("signature verification failed")
    );
    // Back to the original key: verified again from scratch, then cached.
    let before = calls.get();
    assert_eq!(verdict(&a.decide(&req, NOW, &remote_keys())).0, 200);
    assert_eq!(verdict(&a.decide(&req, NOW, &remote_keys())).0, 200);
    assert_eq!(calls.get(), before + 1);
}

#[test]
fn the_cache_can_be_turned_off() {
    let calls = std::cell::Cell::new(0);
    let cfg = with(config(), json!({"jwt_cache_size": 0}));
    let a = Authenticator::new(
        Config::parse(cfg.to_string().as_bytes()).unwrap(),
        Counting(&calls),
    );
    let bearer = format!("Bearer {}", token(&claims()));
    for _ in 0..3 {
        assert_eq!(
            verdict(&a.decide(
                &get("/api/private", &[("authorization", &bearer)]),
                NOW,
                &remote_keys()
            ))
            .0,
            200
        );
    }
    assert_eq!(calls.get(), 3);
}

// ---- Policies: hosts, route names, path templates, claims bound to the request ----

fn policy_config() -> Value {
    let auth0 = |extra: Value| with(json!({"provider": "auth0"}), extra);
    json!({
        "providers": {"auth0": {"issuer": ISS, "audiences": [AUD],
            "remote_jwks": {"cluster": "idp", "uri": "http://idp.test/jwks"}}},
        "rules": [
            {"match": {"hosts": ["admin.example.com"], "prefix": "/api/orders"},
             "requires": auth0(json!({"scopes": ["admin"]}))},
            {"match": {"hosts": ["*.example.com"], "prefix": "/api/orders"},
             "requires": auth0(json!({}))},
            {"match": {"path_template": "/tenants/{tenant}/orders/{rest=**}"},
             "requires": auth0(json!({"claims": [{"claim": "tid", "equals_param": "tenant"}]}))},
            {"match": {"path_template": "/orgs/{org}/**"},
             "requires": auth0(json!({"claims": [{"claim": "orgs", "includes_param": "org"}]}))},
            {"match": {"prefix": "/header"},
             "requires": auth0(json!({"claims": [{"claim": "tid", "equals_header": "X-Tenant-Id"}]}))},
            {"match": {"route": ["orders-route"], "prefix": "/routed"}},
            {"match": {"prefix": "/routed"}, "requires": auth0(json!({}))},
            {"match": {"prefix": "/checks"},
             "requires": auth0(json!({"claims": [
                 {"claim": "email_verified", "present": true},
                 {"claim": "act", "present": false},
                 {"claim": "sub", "prefix": "user-"},
                 {"claim": "roles", "not_includes": ["suspended"]}]}))},
            {"match": {"prefix": "/orders-api"},
             "requires": auth0(json!({"audiences": ["https://orders"]}))}
        ]
    })
}

/// Status and message for a request to the policy configuration with a token of `claims`
/// (merged over the defaults), on Envoy route `route`.
fn policy(
    path: &str,
    headers: &[(&str, &str)],
    extra_claims: Value,
    route: Option<&str>,
) -> (u16, String) {
    let bearer = format!("Bearer {}", token(&with(claims(), extra_claims)));
    let mut all = vec![("authorization", bearer.as_str())];
    all.extend_from_slice(headers);
    // Rules name hosts here: a request has an authority (one that no `hosts` names).
    if !headers.iter().any(|(name, _)| *name == ":authority") {
        all.push((":authority", "api.test"));
    }
    let a = authenticator(&policy_config());
    verdict(&a.decide_on_route(&get(path, &all), route, &NoCertificate, NOW, &remote_keys()))
}

fn forbidden(message: &str) -> (u16, String) {
    (403, message.to_string())
}

#[test]
fn hosts_choose_the_rule() {
    let on = |host: &str, scope: &str| {
        policy(
            "/api/orders",
            &[(":authority", host)],
            json!({ "scope": scope }),
            None,
        )
    };
    let scope = forbidden("Insufficient Scope");
    let unmatched = forbidden("Access denied");
    assert_eq!(on("admin.example.com", "read"), scope);
    assert_eq!(on("admin.example.com", "admin"), (200, String::new()));
    assert_eq!(on("shop.example.com", "read"), (200, String::new()));
    assert_eq!(on("a.b.example.com", "read"), (200, String::new()));
    // Case and a port do not matter.
    assert_eq!(on("ADMIN.Example.COM:8443", "read"), scope);
    // A trailing dot is read both ways (as Envoy routes it by default, it names no host
    // here); the bare domain, a look-alike suffix, a host that cannot be read match none.
    assert_eq!(on("admin.example.com.", "admin"), unmatched);
    assert_eq!(on("example.com", "read"), unmatched);
    assert_eq!(on("evilexample.com", "read"), unmatched);
    // An empty port is dropped; an authority that is not one host is refused (400).
    assert_eq!(on("admin.example.com:", "read"), scope);
    let ambiguous = (400, "Ambiguous request authority".to_string());
    for host in [
        "user@admin.example.com",
        "admin%2eexample.com",
        "[admin.example.com]",
        "admin.example.com,shop.example.com",
        "admin.example.com:80:80",
    ] {
        assert_eq!(on(host, "read"), ambiguous, "{host}");
    }
    let two = policy(
        "/api/orders",
        &[
            (":authority", "shop.example.com"),
            (":authority", "x.example.com"),
        ],
        json!({}),
        None,
    );
    assert_eq!(two, ambiguous);
    // No authority at all, where rules name hosts.
    let a = authenticator(&policy_config());
    let bare = get("/api/orders", &[]);
    let decision = a.decide(&bare, NOW, &remote_keys());
    assert_eq!(
        verdict(&decision),
        (400, "Missing request authority".to_string())
    );
    match decision {
        Decision::Deny(refusal) => {
            assert_eq!(refusal.denial.reason, Reason::InvalidRequest);
            assert_eq!(refusal.detail, Some("no authority"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_authority_is_read_only_where_rules_name_hosts_or_a_dpop_proof_is_checked() {
    // The quickstart names no hosts: an authority it cannot read changes nothing.
    let bearer = format!("Bearer {}", token(&claims()));
    let a = authenticator(&config());
    for authority in ["x@api.test", "[api.test]", "a,b"] {
        let req = get(
            "/api/private",
            &[(":authority", authority), ("authorization", &bearer)],
        );
        assert_eq!(verdict(&a.decide(&req, NOW, &remote_keys())).0, 200);
    }
}

#[test]
fn route_names_choose_the_rule_and_fail_closed_without_one() {
    let bare = |route: Option<&str>| {
        let a = authenticator(&policy_config());
        verdict(&a.decide_on_route(
            &get("/routed", &[(":authority", "api.test")]),
            route,
            &NoCertificate,
            NOW,
            &remote_keys(),
        ))
        .0
    };
    assert_eq!(bare(Some("orders-route")), 200);
    assert_eq!(bare(Some("other-route")), 401);
    assert_eq!(bare(None), 401);
    assert!(authenticator(&policy_config()).needs_route_name);
    assert!(!authenticator(&config()).needs_route_name);
}

#[test]
fn a_tenant_in_the_path_must_be_the_tenant_of_the_token() {
    let tenant = |path: &str, tid: Value| policy(path, &[], json!({ "tid": tid }), None);
    let ok = (200, String::new());
    let other = forbidden("Unexpected 'tid' value");
    assert_eq!(tenant("/tenants/acme/orders", json!("acme")), ok);
    assert_eq!(tenant("/tenants/acme/orders/7/items", json!("acme")), ok);
    assert_eq!(tenant("/tenants/42/orders", json!(42)), ok);
    assert_eq!(tenant("/tenants/other/orders", json!("acme")), other);
    assert_eq!(tenant("/tenants/ACME/orders", json!("acme")), other);
    assert_eq!(tenant("/tenants/acme/orders", json!(["acme"])), other);
    assert_eq!(
        policy("/tenants/acme/orders", &[], json!({"tid": null}), None),
        forbidden("Missing 'tid' claim")
    );
    // Escapes are decoded before the comparison; nothing reaches another tenant.
    assert_eq!(tenant("/tenants/%61cme/orders", json!("acme")), ok);
    for trick in [
        "/tenants/acme/../other/orders",
        "/tenants/acme/%2e%2e/other/orders",
        "/tenants/other/orders/../../acme/orders",
        "/tenants/acme%2Fother/orders",
        "/tenants/acme;x=1/orders",
        "/tenants/acme/orders/..%2F..%2Fother",
        "/tenants/other/orders.json",
    ] {
        assert_eq!(tenant(trick, json!("acme")).0, 403, "{trick}");
    }
    // A tenant segment with an extension names another tenant.
    assert_eq!(tenant("/tenants/acme.json/orders", json!("acme")), other);
}

#[test]
fn a_captured_value_may_be_a_member_of_a_claim() {
    let org = |orgs: Value| policy("/orgs/blue/x", &[], json!({ "orgs": orgs }), None);
    assert_eq!(org(json!(["red", "blue"])), (200, String::new()));
    assert_eq!(org(json!("red blue")), (200, String::new()));
    assert_eq!(org(json!(["red"])), forbidden("Unexpected 'orgs' value"));
    assert_eq!(org(json!("blueish")), forbidden("Unexpected 'orgs' value"));
}

#[test]
fn a_header_must_be_sent_once_and_equal_the_claim() {
    let header = |values: &[&str]| {
        let headers: Vec<(&str, &str)> = values.iter().map(|v| ("x-tenant-id", *v)).collect();
        policy("/header", &headers, json!({"tid": "acme"}), None)
    };
    let once =
        forbidden("Request header 'x-tenant-id' must be sent once for the 'tid' claim check");
    assert_eq!(header(&["acme"]), (200, String::new()));
    assert_eq!(header(&["other"]), forbidden("Unexpected 'tid' value"));
    assert_eq!(header(&[]), once);
    assert_eq!(header(&["acme", "acme"]), once);
    // A value that is not UTF-8 cannot be compared: the request is refused.
    let a = authenticator(&policy_config());
    let bearer = format!("Bearer {}", token(&with(claims(), json!({"tid": "acme"}))));
    let mut req = get("/header", &[("authorization", &bearer)]);
    req.undecodable.push("x-tenant-id".into());
    assert_eq!(
        verdict(&a.decide(&req, NOW, &remote_keys())),
        (400, UNDECODABLE.to_string())
    );
}

#[test]
fn present_prefix_and_not_includes() {
    let base = json!({"email_verified": true, "roles": ["user"]});
    let checks = |changes: Value| policy("/checks", &[], with(base.clone(), changes), None);
    assert_eq!(checks(json!({})), (200, String::new()));
    assert_eq!(checks(json!({"roles": null})), (200, String::new()));
    assert_eq!(
        checks(json!({"email_verified": null})),
        forbidden("Missing 'email_verified' claim")
    );
    assert_eq!(
        checks(json!({"act": {"sub": "admin"}})),
        forbidden("Unexpected 'act' value")
    );
    assert_eq!(
        checks(json!({"sub": "service-1"})),
        forbidden("Unexpected 'sub' value")
    );
    assert_eq!(
        checks(json!({"roles": ["user", "suspended"]})),
        forbidden("Unexpected 'roles' value")
    );
    assert_eq!(
        checks(json!({"roles": "user suspended"})),
        forbidden("Unexpected 'roles' value")
    );
    assert_eq!(
        checks(json!({"roles": {"suspended": true}})),
        forbidden("Unexpected 'roles' value")
    );
}

#[test]
fn a_requirement_may_name_its_own_audiences() {
    let aud = |aud: &str| policy("/orders-api", &[], json!({ "aud": aud }), None);
    assert_eq!(aud("https://orders"), (200, String::new()));
    assert_eq!(aud(AUD), invalid("Unexpected 'aud' value"));
    // Elsewhere the provider's own audiences still apply.
    assert_eq!(
        policy("/routed", &[], json!({"aud": "https://orders"}), None),
        invalid("Unexpected 'aud' value")
    );
}

#[test]
fn cors_preflights_pass_unchecked_only_when_configured_and_real() {
    let preflight = [
        ("origin", "https://app.test"),
        ("access-control-request-method", "DELETE"),
        ("x-user-id", "forged"),
    ];
    let run = |cfg: &Value, method: &str, path: &str, headers: &[(&str, &str)]| {
        authenticator(cfg).decide(&Request::new(method, path, headers), NOW, &remote_keys())
    };
    let pass = with(config(), json!({"cors_preflight": "pass"}));
    let d = run(&pass, "OPTIONS", "/api/private", &preflight);
    assert_eq!(verdict(&d).0, 200);
    assert_eq!(changes(&d).remove, vec!["x-user-id".to_string()]);
    // The default authenticates preflights like any request.
    assert_eq!(
        verdict(&run(&config(), "OPTIONS", "/api/private", &preflight)).0,
        401
    );
    // Not a preflight: a plain OPTIONS, one without the requested method, another method,
    // an override naming another method, a path the filter refuses.
    let no_method = &preflight[..1];
    assert_eq!(verdict(&run(&pass, "OPTIONS", "/api/private", &[])).0, 401);
    assert_eq!(
        verdict(&run(&pass, "OPTIONS", "/api/private", no_method)).0,
        401
    );
    assert_eq!(
        verdict(&run(&pass, "options", "/api/private", &preflight)).0,
        401
    );
    assert_eq!(
        verdict(&run(&pass, "GET", "/api/private", &preflight)).0,
        401
    );
    let mut overridden = preflight.to_vec();
    overridden.push(("x-http-method-override", "DELETE"));
    assert_eq!(
        verdict(&run(&pass, "OPTIONS", "/api/private", &overridden)).0,
        401
    );
    assert_eq!(
        verdict(&run(
            &pass,
            "OPTIONS",
            "/api/private?_method=DELETE",
            &preflight
        ))
        .0,
        401
    );
    assert_eq!(
        verdict(&run(&pass, "OPTIONS", "/api/%2e%2e/%2e%2e/x", &preflight)).0,
        403
    );
    // An override the filter cannot read could name any method: refused, not passed, even
    // where no rule names methods.
    let no_methods = with(policy_config(), json!({"cors_preflight": "pass"}));
    assert_eq!(
        verdict(&run(&no_methods, "OPTIONS", "/routed", &preflight)).0,
        200
    );
    let mut req = Request::new("OPTIONS", "/routed", &preflight);
    req.undecodable.push("x-http-method-override".into());
    assert_eq!(
        verdict(&authenticator(&no_methods).decide(&req, NOW, &remote_keys())),
        (400, UNDECODABLE.to_string())
    );
}

#[test]
fn protected_resource_metadata_is_served_and_named_in_401_challenges() {
    let cfg = with(
        config(),
        json!({"resource_metadata": {"resource": "https://api.test/", "authorization_servers": [ISS],
                                     "scopes_supported": ["read:messages"]}}),
    );
    let a = authenticator(&cfg);
    let run =
        |method: &str, path: &str| a.decide(&Request::new(method, path, &[]), NOW, &remote_keys());
    let Decision::Serve(doc) = run("GET", "/.well-known/oauth-protected-resource?x=1") else {
        panic!("not served");
    };
    assert_eq!(
        serde_json::from_str::<Value>(&doc.body).unwrap(),
        json!({"resource": "https://api.test/", "authorization_servers": [ISS],
               "scopes_supported": ["read:messages"]})
    );
    assert_eq!(
        doc.headers,
        vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", "max-age=3600".to_string())
        ]
    );
    // Only GET on exactly that path; no rule names it, so anything else is unmatched.
    assert_eq!(
        verdict(&run("POST", "/.well-known/oauth-protected-resource")).0,
        403
    );
    assert_eq!(
        verdict(&run("GET", "/.well-known/oauth-protected-resource/x")).0,
        403
    );
    let d = run("GET", "/api/private");
    assert_eq!(
        header(&d, "www-authenticate"),
        Some(format!(
            "Bearer realm=\"api\", resource_metadata=\"https://api.test/.well-known/oauth-protected-resource\", {DPOP_ALGS}"
        ).as_str())
    );
    // Without it, nothing is served and challenges are as before.
    assert_eq!(
        verdict(&decide("/.well-known/oauth-protected-resource", "x")).0,
        403
    );
}

#[test]
fn claims_are_copied_into_stream_properties() {
    let mut cfg = config();
    cfg["providers"]["auth0"]["claim_to_properties"] = json!([
        {"claim": "sub", "property": "jwt_sub"},
        {"claim": ["https://example.com/roles"], "property": "jwt.roles"},
        {"claim": "absent", "property": "jwt_absent"}
    ]);
    let a = authenticator(&cfg);
    let bearer = format!("Bearer {}", token(&claims()));
    let d = a.decide(
        &get("/api/private", &[("authorization", &bearer)]),
        NOW,
        &remote_keys(),
    );
    assert_eq!(
        changes(&d).properties,
        vec![
            ("jwt_sub".to_string(), "user-1".to_string()),
            ("jwt.roles".to_string(), "admin,ops".to_string())
        ]
    );
    // Nothing without a verified token.
    let d = a.decide(&get("/api/public", &[]), NOW, &remote_keys());
    assert!(changes(&d).properties.is_empty());
}

/// A DPoP proof by test key `ec256` for a GET of `https://api.test{path}` with `token`.
fn dpop_proof(path: &str, token: &str, jti: &str) -> String {
    let mut jwk = public_jwk("ec256", "-");
    jwk.as_object_mut().map(|o| o.remove("kid"));
    sign(
        "ec256",
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
        &json!({"htm": "GET", "htu": format!("https://api.test{path}"), "iat": NOW, "jti": jti,
                "ath": base64url::encode(&crate::jose::jwks::sha256(token.as_bytes()))}),
    )
}

fn ec256_thumbprint() -> String {
    let mut jwk = public_jwk("ec256", "-");
    jwk.as_object_mut().map(|o| o.remove("kid"));
    base64url::encode(&crate::jose::jwks::proof_key(&jwk).unwrap().1)
}

fn dpop_get(path: &str, authorization: &str, proof: Option<&str>) -> Request {
    let mut headers = vec![
        (":scheme", "https"),
        (":authority", "api.test"),
        ("authorization", authorization),
    ];
    headers.extend(proof.map(|p| ("dpop", p)));
    get(path, &headers)
}

#[test]
fn a_dpop_bound_token_passes_with_its_proof_and_never_as_bearer_even_when_cached() {
    let a = authenticator(&config());
    let bound = token(&with(claims(), json!({"cnf": {"jkt": ec256_thumbprint()}})));
    let proof = dpop_proof("/api/private", &bound, "j1");
    let with_proof = dpop_get("/api/private", &format!("DPoP {bound}"), Some(&proof));
    let d = a.decide(&with_proof, NOW, &remote_keys());
    let Decision::Allow {
        changes,
        proof: Some((ProviderId(0), seen)),
        ..
    } = &d
    else {
        panic!("{:?}", verdict(&d));
    };
    assert_eq!(seen.until_s, NOW + 301);
    // Neither the token nor its proof goes upstream.
    assert!(changes.remove.iter().any(|h| h == "authorization"));
    assert!(changes.remove.iter().any(|h| h == "dpop"));
    // The token is now in the cache; as Bearer it is still refused.
    let stolen = dpop_get("/api/private", &format!("Bearer {bound}"), None);
    let d = a.decide(&stolen, NOW, &remote_keys());
    assert_eq!(
        verdict(&d),
        (
            401,
            "DPoP-bound token requires the DPoP authentication scheme, not Bearer".into()
        )
    );
    assert_eq!(a.take_cache_counts(), (1, 1));
    // With a proof for another request: refused as an invalid proof, challenge in DPoP.
    let wrong_path = dpop_get(
        "/api/private",
        &format!("DPoP {bound}"),
        Some(&dpop_proof("/api/other", &bound, "j2")),
    );
    let d = a.decide(&wrong_path, NOW, &remote_keys());
    assert_eq!(verdict(&d), (401, "DPoP Proof htu mismatch".into()));
    assert_eq!(
        header(&d, "www-authenticate"),
        Some(
            r#"Bearer realm="api", DPoP algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 ES256K EdDSA", error="invalid_dpop_proof", error_description="DPoP Proof htu mismatch""#
        )
    );
    let Decision::Deny(r) = &d else {
        unreachable!()
    };
    assert_eq!(r.denial.reason, Reason::InvalidDpopProof);
}

#[test]
fn an_unbound_token_passes_with_bearer_and_fails_with_dpop() {
    let plain = token(&claims());
    let a = authenticator(&config());
    let bearer = dpop_get("/api/private", &format!("Bearer {plain}"), None);
    assert_eq!(verdict(&a.decide(&bearer, NOW, &remote_keys())).0, 200);
    let proof = dpop_proof("/api/private", &plain, "j1");
    let dpop = dpop_get("/api/private", &format!("DPoP {plain}"), Some(&proof));
    let d = a.decide(&dpop, NOW, &remote_keys());
    assert_eq!(
        verdict(&d),
        (401, "JWT Access Token has no jkt confirmation claim".into())
    );
    // A request that used the DPoP scheme gets its error in the DPoP challenge.
    assert_eq!(
        header(&d, "www-authenticate"),
        Some(
            r#"Bearer realm="api", DPoP algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 ES256K EdDSA", error="invalid_token", error_description="JWT Access Token has no jkt confirmation claim""#
        )
    );
}

#[test]
fn dpop_modes_shape_the_challenge() {
    let with_mode = |mode: &str| {
        let mut c = config();
        c["providers"]["auth0"]["dpop"] = json!({"mode": mode, "algorithms": ["ES256", "EdDSA"]});
        authenticator(&c)
    };
    let missing = get("/api/private", &[]);
    let challenge = |a: &Authenticator<InWasm>, req: &Request| {
        header(&a.decide(req, NOW, &remote_keys()), "www-authenticate").map(str::to_string)
    };
    assert_eq!(
        challenge(&with_mode("allowed"), &missing).as_deref(),
        Some(r#"Bearer realm="api", DPoP algs="ES256 EdDSA""#)
    );
    assert_eq!(
        challenge(&with_mode("required"), &missing).as_deref(),
        Some(r#"DPoP realm="api", algs="ES256 EdDSA""#)
    );
    assert_eq!(
        challenge(&with_mode("disabled"), &missing).as_deref(),
        Some(r#"Bearer realm="api""#)
    );
    // Required: a Bearer token is refused before it is verified.
    let bearer = get(
        "/api/private",
        &[("authorization", &format!("Bearer {}", token(&claims())))],
    );
    let d = with_mode("required").decide(&bearer, NOW, &remote_keys());
    assert_eq!(
        verdict(&d),
        (
            401,
            "DPoP-bound token required: use the DPoP authentication scheme".into()
        )
    );
    assert_eq!(
        header(&d, "www-authenticate"),
        Some(
            r#"DPoP realm="api", algs="ES256 EdDSA", error="invalid_token", error_description="DPoP-bound token required: use the DPoP authentication scheme""#
        )
    );
    // Disabled: the DPoP scheme is a malformed request.
    let dpop = dpop_get("/api/private", "DPoP a.b.c", Some("x.y.z"));
    assert_eq!(
        verdict(&with_mode("disabled").decide(&dpop, NOW, &remote_keys())),
        (400, "The DPoP authentication scheme is not accepted".into())
    );
}

#[test]
fn a_certificate_bound_token_is_refused_without_its_certificate() {
    struct Certificate(Vec<u8>);
    impl Connection for Certificate {
        fn peer_certificate_sha256(&self) -> Option<[u8; 32]> {
            self.0.as_slice().try_into().ok()
        }
    }
    let digest = vec![9u8; 32];
    let bound = token(&with(
        claims(),
        json!({"cnf": {"x5t#S256": base64url::encode(&digest)}}),
    ));
    let a = authenticator(&config());
    let req = get(
        "/api/private",
        &[("authorization", &format!("Bearer {bound}"))],
    );
    let on = |connection: &dyn Connection| {
        verdict(&a.decide_on_route(&req, None, connection, NOW, &remote_keys()))
    };
    assert_eq!(on(&Certificate(digest.clone())).0, 200);
    assert_eq!(
        on(&Certificate(vec![1; 32])),
        (
            401,
            "Certificate-bound token does not match the client certificate".into()
        )
    );
    assert_eq!(
        on(&NoCertificate),
        (
            401,
            "Certificate-bound token requires a client certificate".into()
        )
    );
}

// ---- Tokens in form bodies ----

/// The quickstart with `multi` reading tokens from form bodies too.
fn form_config() -> Value {
    let mut cfg = config();
    cfg["providers"]["multi"]["token_sources"]
        .as_array_mut()
        .unwrap()
        .push(json!({"body": "access_token"}));
    cfg
}

fn multi_token() -> String {
    sign(
        "rsa-b",
        &json!({"alg": "RS256", "kid": "rsa"}),
        &with(claims(), json!({"iss": "https://multi.test/", "aud": "m"})),
    )
}

fn post_form(path: &str, headers: &[(&str, &str)], body: &str) -> Request {
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    let mut req = Request::new("POST", path, &all);
    req.set_form_body(body.as_bytes());
    req
}

#[test]
fn a_body_is_wanted_only_where_a_rule_needs_a_provider_reading_bodies() {
    let form = authenticator(&form_config());
    let post = |path: &str| post_form(path, &[], "");
    assert!(form.wants_body(&post("/multi/x"), None));
    // `any` with one provider that reads bodies.
    assert!(form.wants_body(&post("/any"), None));
    // Providers that do not read bodies, a public route, and no rule at all.
    assert!(!form.wants_body(&post("/api/private"), None));
    assert!(!form.wants_body(&post("/api/public"), None));
    assert!(!form.wants_body(&post("/nowhere"), None));
    // Not a form, or a GET.
    let json = Request::new("POST", "/multi/x", &[("content-type", "application/json")]);
    assert!(!form.wants_body(&json, None));
    let get = get(
        "/multi/x",
        &[("content-type", "application/x-www-form-urlencoded")],
    );
    assert!(!form.wants_body(&get, None));
    // Without a body source, never.
    assert!(!authenticator(&config()).wants_body(&post("/multi/x"), None));
}

#[test]
fn a_token_in_a_form_body_is_verified_and_cut_out_of_the_body() {
    let t = multi_token();
    let body = format!("a=1&access_token={t}&b=%20x");
    let length = body.len().to_string();
    let req = post_form("/multi/x", &[("content-length", &length)], &body);
    let d = authenticator(&form_config()).decide(&req, NOW, &remote_keys());
    assert_eq!(verdict(&d), (200, String::new()));
    assert_eq!(changes(&d).body.as_deref(), Some("a=1&b=%20x"));
    assert!(
        changes(&d)
            .set
            .contains(&("content-length".into(), "10".into()))
    );
    // `forward: true` keeps the token, and so the body as it came.
    let mut cfg = form_config();
    cfg["providers"]["multi"]["forward"] = json!(true);
    let d = authenticator(&cfg).decide(&req, NOW, &remote_keys());
    assert_eq!(verdict(&d), (200, String::new()));
    assert_eq!(changes(&d).body, None);
}

#[test]
fn a_body_token_counts_as_one_method_with_the_others() {
    let t = multi_token();
    let bearer = format!("Bearer {t}");
    let body = format!("access_token={t}");
    let twice = post_form("/multi/x", &[("authorization", &bearer)], &body);
    let d = authenticator(&form_config()).decide(&twice, NOW, &remote_keys());
    assert_eq!(
        verdict(&d),
        (400, "More than one method used for authentication".into())
    );
    // A provider without the body source does not see the body's token.
    let d =
        authenticator(&config()).decide(&post_form("/multi/x", &[], &body), NOW, &remote_keys());
    assert_eq!(verdict(&d), (401, "Authentication required".into()));
}

#[test]
fn bodies_too_large_or_too_slow_are_not_token_errors() {
    let req = post_form("/multi/x", &[], "");
    let a = authenticator(&form_config());
    for (failure, status, message) in [
        (
            Failure::BodyTooLarge,
            413,
            "Request body is too large to search for an access token",
        ),
        (
            Failure::BodyTimeout,
            408,
            "Request body did not arrive in time",
        ),
    ] {
        let Decision::Deny(r) = a.refused(&req, failure, None, None) else {
            panic!("not denied");
        };
        assert_eq!(r.denial.status, status);
        let body: Value = serde_json::from_str(&r.denial.body).unwrap();
        assert_eq!(
            body,
            json!({"error": "invalid_request", "message": message})
        );
        assert!(
            r.denial
                .headers
                .iter()
                .all(|(n, _)| *n != "www-authenticate")
        );
    }
}
