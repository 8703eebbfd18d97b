//! Each check of a DPoP proof, by a proof that fails only that check (and the same proof
//! without the flaw passing).

use super::*;
use crate::jose::verify::InWasm;
use crate::testkit::{NOW, public_jwk, sign};
use serde_json::json;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln";

/// base64url(SHA-256(bytes)), as `ath` and `cnf` carry hashes.
fn sha256_b64(bytes: &[u8]) -> String {
    base64url::encode(&jwks::sha256(bytes))
}

/// Test key `name`'s public JWK as a proof carries it (no `kid`).
fn jwk(name: &str) -> Value {
    let mut jwk = public_jwk(name, "-");
    jwk.as_object_mut().map(|o| o.remove("kid"));
    jwk
}

fn header(key: &str, alg: &str) -> Value {
    json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk(key)})
}

fn claims() -> Value {
    json!({
        "htm": "GET",
        "htu": "https://api.test/orders/1",
        "iat": NOW,
        "jti": "proof-1",
        "ath": sha256_b64(TOKEN.as_bytes()),
    })
}

/// `claims()` with `changes` merged in (a `null` removes the claim).
fn with(changes: Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().into_iter().flatten() {
        match v {
            Value::Null => c.as_object_mut().map(|o| o.remove(k)),
            v => c.as_object_mut().map(|o| o.insert(k.clone(), v.clone())),
        };
    }
    c
}

fn request(headers: &[(&str, &str)]) -> Request {
    let mut all = vec![(":scheme", "https"), (":authority", "api.test")];
    all.extend_from_slice(headers);
    Request::new("GET", "/orders/1?page=2", &all)
}

fn check_with(proof: &str, req: &Request, policy: &DpopPolicy) -> Result<Proven, ProofError> {
    check(proof, TOKEN, req, policy, NOW, 8192, &InWasm)
}

fn verdict(proof: &str) -> Result<Proven, ProofError> {
    check_with(proof, &request(&[]), &DpopPolicy::default())
}

fn err(proof: &str) -> ProofError {
    verdict(proof).expect_err("refused")
}

fn ec_proof(claims: &Value) -> String {
    sign("ec256", &header("ec256", "ES256"), claims)
}

#[test]
fn a_proof_by_each_key_type_passes_with_its_thumbprint() {
    for (key, alg) in [
        ("ec256", "ES256"),
        ("rsa-a", "RS256"),
        ("rsa-a", "PS384"),
        ("ed25519", "EdDSA"),
        ("secp256k1", "ES256K"),
    ] {
        let proven = verdict(&sign(key, &header(key, alg), &claims()))
            .unwrap_or_else(|e| panic!("{key} {alg}: {}", e.message()));
        let (_, jkt) = jwks::proof_key(&jwk(key)).unwrap();
        assert_eq!(proven.jkt, jkt, "{key}");
        assert_eq!(proven.seen.until_s, NOW + 301);
    }
}

#[test]
fn the_thumbprint_is_rfc_7638s() {
    // RFC 7638 section 3.1.
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    let (_, jkt) = jwks::proof_key(&jwk).unwrap();
    assert_eq!(
        base64url::encode(&jkt),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn typ_must_be_dpop_jwt() {
    let mut h = header("ec256", "ES256");
    h["typ"] = json!("JWT");
    assert_eq!(err(&sign("ec256", &h, &claims())), ProofError::Type);
    h.as_object_mut().map(|o| o.remove("typ"));
    assert_eq!(err(&sign("ec256", &h, &claims())), ProofError::Type);
}

#[test]
fn alg_must_be_an_allowed_asymmetric_one() {
    let only_es256 = DpopPolicy::new(DpopMode::Allowed, vec![Algorithm::ES256], 300, 30, None);
    let rs = sign("rsa-a", &header("rsa-a", "RS256"), &claims());
    assert_eq!(
        check_with(&rs, &request(&[]), &only_es256).unwrap_err(),
        ProofError::Algorithm
    );
    assert!(check_with(&ec_proof(&claims()), &request(&[]), &only_es256).is_ok());
    // An HMAC proof "signed" with the public key's bytes: never an allowed algorithm.
    let hs = sign(
        "a-shared-secret-of-32-bytes-long!",
        &header("ec256", "HS256"),
        &claims(),
    );
    assert_eq!(err(&hs), ProofError::Algorithm);
    let mut none = header("ec256", "ES256");
    none["alg"] = json!("none");
    let unsigned = {
        let b64 = |v: &Value| base64url::encode(v.to_string().as_bytes());
        format!("{}.{}.", b64(&none), b64(&claims()))
    };
    assert!(matches!(err(&unsigned), ProofError::Format(_)));
}

#[test]
fn the_jwk_must_be_a_public_asymmetric_key_that_fits_alg() {
    let mut h = header("ec256", "ES256");
    h.as_object_mut().map(|o| o.remove("jwk"));
    assert_eq!(
        err(&sign("ec256", &h, &claims())),
        ProofError::Key("Missing 'jwk' in DPoP proof")
    );
    let mut private = header("ec256", "ES256");
    private["jwk"]["d"] = json!("AAAA");
    assert_eq!(
        err(&sign("ec256", &private, &claims())),
        ProofError::Key("'jwk' header holds a private key")
    );
    let mut oct = header("ec256", "ES256");
    oct["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"});
    assert_eq!(
        err(&sign("ec256", &oct, &claims())),
        ProofError::Key("'jwk' header holds a private key")
    );
    let mut unknown = header("ec256", "ES256");
    unknown["jwk"] = json!({"kty": "XYZ", "x": "AAAA"});
    assert_eq!(
        err(&sign("ec256", &unknown, &claims())),
        ProofError::Key("'jwk' header is not an asymmetric public key")
    );
    let mut off_curve = header("ec256", "ES256");
    off_curve["jwk"]["y"] = off_curve["jwk"]["x"].clone();
    assert_eq!(
        err(&sign("ec256", &off_curve, &claims())),
        ProofError::Key("'jwk' header is not a usable public key")
    );
    // An RSA key under ES256.
    assert_eq!(
        err(&sign("ec256", &header("rsa-a", "ES256"), &claims())),
        ProofError::KeyDoesNotFit
    );
}

#[test]
fn es512_and_es256k_proofs_need_keys_of_their_curve() {
    // ES256K under a P-256 key, ES256 under a secp256k1 key, ES512 under either.
    for (key, alg) in [
        ("ec256", "ES256K"),
        ("secp256k1", "ES256"),
        ("ec256", "ES512"),
        ("secp256k1", "ES512"),
        ("p521", "ES256K"),
    ] {
        assert_eq!(
            err(&sign(key, &header(key, alg), &claims())),
            ProofError::KeyDoesNotFit,
            "{key} {alg}"
        );
    }
    // ES512 is verified by the host only: in wasm, a good ES512 proof fails its signature.
    assert_eq!(
        err(&sign("p521", &header("p521", "ES512"), &claims())),
        ProofError::Signature
    );
    let host = crate::jose::verify::HostCrypto {
        call: |_: &[u8]| Some(vec![0x08, 0x01]),
    };
    let proof = sign("p521", &header("p521", "ES512"), &claims());
    let policy = DpopPolicy::default();
    assert!(check(&proof, TOKEN, &request(&[]), &policy, NOW, 8192, &host).is_ok());
    // Where the VM verifies in wasm, the default list (and its challenge) loses ES512; a
    // configured list is kept as written.
    let mut wasm = DpopPolicy::default();
    wasm.for_wasm_verifier();
    assert!(!wasm.algorithms.contains(&Algorithm::ES512));
    assert!(wasm.algorithms.contains(&Algorithm::ES256K));
    assert_eq!(
        wasm.algs,
        "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES256K EdDSA"
    );
    assert_eq!(
        check(&proof, TOKEN, &request(&[]), &wasm, NOW, 8192, &host).unwrap_err(),
        ProofError::Algorithm
    );
    let mut configured = DpopPolicy::new(
        DpopMode::Allowed,
        vec![Algorithm::ES512, Algorithm::ES256],
        300,
        30,
        None,
    );
    configured.for_wasm_verifier();
    assert_eq!(configured.algs, "ES512 ES256");
}

#[test]
fn the_signature_must_be_the_jwks() {
    // Signed by rsa-b, carrying rsa-a's public key.
    assert_eq!(
        err(&sign("rsa-b", &header("rsa-a", "RS256"), &claims())),
        ProofError::Signature
    );
}

#[test]
fn iat_must_be_within_offset_and_leeway() {
    for (iat, ok) in [
        (json!(NOW), true),
        (json!(NOW - 300), true),
        (json!(NOW - 301), false),
        (json!(NOW + 30), true),
        (json!(NOW + 31), false),
    ] {
        let got = verdict(&ec_proof(&with(json!({ "iat": iat }))));
        assert_eq!(got.is_ok(), ok, "iat {iat}");
        if !ok {
            assert_eq!(got.unwrap_err(), ProofError::IatOutside);
        }
    }
    assert_eq!(
        err(&ec_proof(&with(json!({"iat": null})))),
        ProofError::IatMissing
    );
    assert_eq!(
        err(&ec_proof(&with(json!({"iat": "1700000000"})))),
        ProofError::IatMissing
    );
}

#[test]
fn exp_and_nbf_when_present_hold_with_the_iat_leeway() {
    // The default policy's leeway is 30 s.
    for (exp, ok) in [
        (json!(NOW - 60), false),
        (json!(NOW - 30), false),
        (json!(NOW - 29), true),
        (json!(NOW + 60), true),
        (json!((NOW - 30) as f64 + 0.5), true),
    ] {
        let got = verdict(&ec_proof(&with(json!({ "exp": exp }))));
        assert_eq!(
            got.clone().err(),
            (!ok).then_some(ProofError::Expired),
            "exp {exp}"
        );
    }
    for (nbf, ok) in [
        (json!(NOW), true),
        (json!(NOW - 600), true),
        (json!(NOW + 30), true),
        (json!(NOW + 31), false),
    ] {
        let got = verdict(&ec_proof(&with(json!({ "nbf": nbf }))));
        assert_eq!(
            got.err(),
            (!ok).then_some(ProofError::NotYetValid),
            "nbf {nbf}"
        );
    }
    // The leeway is the policy's, not a constant.
    let strict = DpopPolicy {
        iat_leeway_s: 0,
        ..DpopPolicy::default()
    };
    let at_now = ec_proof(&with(json!({"exp": NOW})));
    assert_eq!(
        check_with(&at_now, &request(&[]), &strict).err(),
        Some(ProofError::Expired)
    );
    let next = ec_proof(&with(json!({"exp": NOW + 1})));
    assert!(check_with(&next, &request(&[]), &strict).is_ok());
    // Absent is fine (RFC 9449 requires neither); anything but a number is an invalid proof.
    assert!(verdict(&ec_proof(&with(json!({"exp": null, "nbf": null})))).is_ok());
    for bad in [
        json!(String::from("9999999999")),
        json!(true),
        json!([NOW + 60]),
        json!({}),
    ] {
        let exp = err(&ec_proof(&with(json!({ "exp": bad.clone() }))));
        assert_eq!(exp.message(), "DPoP proof 'exp' claim must be a number");
        let nbf = err(&ec_proof(&with(json!({ "nbf": bad }))));
        assert_eq!(nbf.message(), "DPoP proof 'nbf' claim must be a number");
    }
    assert_eq!(
        ProofError::Expired.message(),
        "DPoP proof 'exp' claim timestamp check failed"
    );
    assert_eq!(
        ProofError::NotYetValid.message(),
        "DPoP proof 'nbf' claim timestamp check failed"
    );
}

#[test]
fn htm_must_be_the_method_with_no_override() {
    assert_eq!(
        err(&ec_proof(&with(json!({"htm": "POST"})))),
        ProofError::HtmMismatch
    );
    assert_eq!(
        err(&ec_proof(&with(json!({"htm": "get"})))),
        ProofError::HtmMismatch
    );
    assert_eq!(
        err(&ec_proof(&with(json!({"htm": null})))),
        ProofError::HtmMissing
    );
    let overridden = request(&[("x-http-method-override", "DELETE")]);
    assert_eq!(
        check_with(&ec_proof(&claims()), &overridden, &DpopPolicy::default()).unwrap_err(),
        ProofError::HtmMismatch
    );
    let same = request(&[("x-http-method-override", "GET")]);
    assert!(check_with(&ec_proof(&claims()), &same, &DpopPolicy::default()).is_ok());
}

#[test]
fn htu_must_be_the_request_uri_after_normalisation() {
    for htu in [
        "https://api.test/orders/1",
        "HTTPS://API.TEST:443/orders/1",
        "https://api.test/orders/%31",
        "https://api.test/orders/./1",
        "https://api.test/orders/1?page=3#frag",
    ] {
        assert!(
            verdict(&ec_proof(&with(json!({ "htu": htu })))).is_ok(),
            "{htu}"
        );
    }
    for htu in [
        "http://api.test/orders/1",
        "https://api.test:8443/orders/1",
        "https://other.test/orders/1",
        "https://api.test/orders/2",
        "https://api.test/orders/1/",
        "https://api.test/Orders/1",
    ] {
        assert_eq!(
            err(&ec_proof(&with(json!({ "htu": htu })))),
            ProofError::HtuMismatch,
            "{htu}"
        );
    }
    for htu in [
        "/orders/1",
        "ftp://api.test/orders/1",
        "https://u@api.test/orders/1",
    ] {
        assert_eq!(
            err(&ec_proof(&with(json!({ "htu": htu })))),
            ProofError::HtuInvalid,
            "{htu}"
        );
    }
    assert_eq!(
        err(&ec_proof(&with(json!({"htu": null})))),
        ProofError::HtuMissing
    );
}

#[test]
fn the_request_authority_is_read_as_the_htu_authority_is() {
    let proof = ec_proof(&with(json!({"htu": "https://api.test/orders/1"})));
    let on = |headers: &[(&str, &str)]| {
        let mut all = vec![(":scheme", "https")];
        all.extend_from_slice(headers);
        let req = Request::new("GET", "/orders/1", &all);
        check_with(&proof, &req, &DpopPolicy::default()).map(|_| ())
    };
    for authority in ["api.test", "API.Test:", "api.test:443", "api.test:0443"] {
        assert_eq!(on(&[(":authority", authority)]), Ok(()), "{authority}");
    }
    assert_eq!(on(&[("host", "api.test")]), Ok(()));
    // What `authority::of_request` refuses matches no `htu` (binding.rs refuses it first).
    for headers in [
        &[(":authority", "x@api.test")][..],
        &[(":authority", "api%2etest")],
        &[(":authority", "[api.test]")],
        &[(":authority", "api.test,api.test")],
        &[(":authority", "api.test:443:443")],
        &[(":authority", "api.test"), (":authority", "api.test")],
        &[(":authority", "api.test"), ("host", "other.test")],
        &[],
    ] {
        assert_eq!(on(headers), Err(ProofError::HtuMismatch), "{headers:?}");
    }
    for htu in [
        "https://[api.test]/orders/1",
        "https://api%2etest/orders/1",
        "https://api.test:/orders/1:80:80",
        "https://api.test:80:80/orders/1",
    ] {
        let proof = ec_proof(&with(json!({ "htu": htu })));
        let req = request(&[]);
        let got = check_with(&proof, &req, &DpopPolicy::default()).map(|_| ());
        let want = if htu.contains("/orders/1:") {
            Err(ProofError::HtuMismatch)
        } else {
            Err(ProofError::HtuInvalid)
        };
        assert_eq!(got, want, "{htu}");
    }
}

#[test]
fn a_configured_origin_replaces_scheme_and_authority() {
    let behind_tls = DpopPolicy::new(
        DpopMode::Allowed,
        DpopPolicy::algorithms(),
        300,
        30,
        Some("https://public.example".into()),
    );
    let internal = Request::new(
        "GET",
        "/orders/1",
        &[(":scheme", "http"), (":authority", "10.0.0.7:8080")],
    );
    let public = ec_proof(&with(json!({"htu": "https://public.example/orders/1"})));
    assert!(check_with(&public, &internal, &behind_tls).is_ok());
    let as_seen = ec_proof(&with(json!({"htu": "http://10.0.0.7:8080/orders/1"})));
    assert_eq!(
        check_with(&as_seen, &internal, &behind_tls).unwrap_err(),
        ProofError::HtuMismatch
    );
}

#[test]
fn jti_and_ath_are_required_and_ath_names_the_token() {
    for jti in [json!(null), json!(""), json!(7), json!("j".repeat(257))] {
        assert_eq!(
            err(&ec_proof(&with(json!({ "jti": jti })))),
            ProofError::JtiMissing
        );
    }
    assert_eq!(
        err(&ec_proof(&with(json!({"ath": null})))),
        ProofError::AthMissing
    );
    assert_eq!(
        err(&ec_proof(&with(
            json!({"ath": sha256_b64(b"another token")})
        ))),
        ProofError::AthMismatch
    );
}

#[test]
fn oversized_proofs_are_refused_before_decoding() {
    let proof = ec_proof(&claims());
    let req = request(&[]);
    let policy = DpopPolicy::default();
    assert_eq!(
        check(&proof, TOKEN, &req, &policy, NOW, proof.len() - 1, &InWasm).unwrap_err(),
        ProofError::TooLarge
    );
}

#[test]
fn the_replay_id_differs_by_jti_and_by_key() {
    let id = |key: &str, alg: &str, jti: &str| {
        verdict(&sign(key, &header(key, alg), &with(json!({ "jti": jti }))))
            .unwrap()
            .seen
            .id
    };
    assert_eq!(id("ec256", "ES256", "a"), id("ec256", "ES256", "a"));
    assert_ne!(id("ec256", "ES256", "a"), id("ec256", "ES256", "b"));
    assert_ne!(id("ec256", "ES256", "a"), id("ed25519", "EdDSA", "a"));
}

#[test]
fn uris_normalise_as_rfc_3986_says() {
    for (uri, want) in [
        ("https://a.test", Some("https://a.test/")),
        ("HTTP://A.Test:80/x", Some("http://a.test/x")),
        ("http://a.test:0080/x", Some("http://a.test/x")),
        ("https://a.test:/x", Some("https://a.test/x")),
        ("https://a.test:8443/x", Some("https://a.test:8443/x")),
        ("https://[::1]:443/x", Some("https://[::1]/x")),
        ("https://a.test/%7e%2f%2F", Some("https://a.test/~%2F%2F")),
        ("https://a.test/a/../../b/./c/..", Some("https://a.test/b/")),
        ("https://a.test/x?y#z", Some("https://a.test/x")),
        ("https://a.test/%zz", None),
        ("https://a.test/%+1", None),
        ("https://a.test/%4", None),
        ("https://user@a.test/", None),
        ("https://a.test:99999/", None),
        ("https://a.test:0/", None),
        ("https://[0:0::1]:8443/x", Some("https://[0:0::1]:8443/x")),
        ("https://[::ABCD]/x", Some("https://[::abcd]/x")),
        ("https://[a.test]/x", None),
        ("https://a%2etest/x", None),
        ("https://a.test,b.test/x", None),
        ("https://0x7f.1/x", None),
        ("https://a.test:80:80/x", None),
        ("https://a test/", None),
        ("https:///x", None),
        ("ws://a.test/", None),
        ("a.test/x", None),
    ] {
        assert_eq!(normalize_uri(uri).as_deref(), want, "{uri}");
    }
}
