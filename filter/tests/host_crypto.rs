//! Differential test: the host-accelerated path (`HostCrypto`, which encodes Envoy's
//! `verify_signature` arguments) and the in-wasm path (`InWasm`) give the same verdict
//! on every Wycheproof JWS vector and on the project's own keys, valid and tampered,
//! except ES512, which only the host verifies: there the in-wasm path always refuses, and
//! the host path must give Wycheproof's verdict. The host side is a native stand-in for
//! Envoy's function (`jwt_filter_testkit::host`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unreachable,
    reason = "test code: a panic fails the test, and never runs in the VM"
)]

mod support;

use jwt_filter::jose::alg::Algorithm;
use jwt_filter::jose::jwks::{KeySet, Origin};
use jwt_filter::jose::jws;
use jwt_filter::jose::verify::{HostCrypto, InWasm, SignatureVerifier};
use jwt_filter_testkit::host::native_verify_signature;
use jwt_filter_testkit::{keys, wycheproof};
use serde_json::json;
use std::cell::Cell;
use support::group_key_set;

/// Both verdicts for one token against one key set; also counts host calls.
fn verdicts(set: &KeySet, token: &str, host_calls: &Cell<u32>) -> Option<(bool, bool)> {
    let parsed = jws::parse(token).ok()?;
    let key = set.select(parsed.kid.as_deref(), parsed.alg).ok()?;
    let host = HostCrypto {
        call: |args: &[u8]| {
            host_calls.set(host_calls.get() + 1);
            native_verify_signature(args)
        },
    };
    let input = parsed.signing_input.as_bytes();
    Some((
        host.verify(parsed.alg, key, input, &parsed.signature),
        InWasm.verify(parsed.alg, key, input, &parsed.signature),
    ))
}

#[test]
fn both_paths_agree_on_every_wycheproof_vector() {
    let host_calls = Cell::new(0);
    let (mut compared, mut valid, mut es512) = (0, 0, Vec::new());
    let vectors = wycheproof("json_web_signature_test.json");
    for group in vectors["testGroups"].as_array().unwrap() {
        let Ok(set) = group_key_set(group) else {
            continue;
        };
        for test in group["tests"].as_array().unwrap() {
            let token = test["jws"].as_str().unwrap();
            if let Some((host, wasm)) = verdicts(&set, token, &host_calls) {
                if jws::parse(token).unwrap().alg == Algorithm::ES512 {
                    // Only the host verifies P-521: in wasm, every ES512 signature fails.
                    assert_eq!(host, test["result"] == "valid", "tcId {}", test["tcId"]);
                    assert!(!wasm, "tcId {}", test["tcId"]);
                    es512.push((test["tcId"].as_u64().unwrap(), host));
                } else {
                    assert_eq!(host, wasm, "tcId {}", test["tcId"]);
                }
                compared += 1;
                valid += usize::from(host);
            }
        }
    }
    // Most vectors reach the signature stage, and the host really was asked (RS/ES).
    assert!(compared > 300, "{compared}");
    assert!(valid >= 30, "{valid}");
    assert!(host_calls.get() > 200, "{}", host_calls.get());
    // RFC 7520 figure 27 (tcIds 347 and 351), ES512, verified by the host.
    assert_eq!(es512, [(347, true), (351, true)]);
}

#[test]
fn both_paths_agree_on_the_projects_keys() {
    let host_calls = Cell::new(0);
    for (name, alg) in [
        ("rsa-a", Algorithm::RS256),
        ("rsa-b", Algorithm::RS384),
        ("rsa-a", Algorithm::RS512),
        ("rsa-b", Algorithm::PS256),
        ("ec256", Algorithm::ES256),
        ("secp256k1", Algorithm::ES256K),
    ] {
        let doc = json!({"keys": [keys::public_jwk(name, "k")]});
        let set = KeySet::from_object(doc.as_object().unwrap(), Origin::Remote)
            .unwrap()
            .set;
        let good = keys::sign(
            name,
            &json!({"alg": format!("{alg:?}")}),
            &json!({"sub": "x"}),
        );
        let (input, signature) = good.rsplit_once('.').unwrap();
        let mut raw = jwt_filter::jose::base64url::decode(signature).unwrap();
        assert_eq!(
            verdicts(&set, &good, &host_calls),
            Some((true, true)),
            "{name} {alg:?}"
        );
        for i in [0, raw.len() / 2, raw.len() - 1] {
            raw[i] ^= 0x01;
            let bad = format!("{input}.{}", jwt_filter::jose::base64url::encode(&raw));
            assert_eq!(
                verdicts(&set, &bad, &host_calls),
                Some((false, false)),
                "{name} {alg:?} byte {i}"
            );
            raw[i] ^= 0x01;
        }
    }
    // RS256, RS384, RS512 and ES256 went to the host (4 each); PS256 and ES256K stayed in
    // wasm (the host has no secp256k1).
    assert_eq!(host_calls.get(), 16);
}

#[test]
fn es512_verifies_through_the_host_only() {
    let host_calls = Cell::new(0);
    let doc = json!({"keys": [keys::public_jwk("p521", "k")]});
    let set = KeySet::from_object(doc.as_object().unwrap(), Origin::Remote)
        .unwrap()
        .set;
    let good = keys::sign("p521", &json!({"alg": "ES512"}), &json!({"sub": "x"}));
    let (input, signature) = good.rsplit_once('.').unwrap();
    let mut raw = jwt_filter::jose::base64url::decode(signature).unwrap();
    assert_eq!(raw.len(), 132);
    assert_eq!(verdicts(&set, &good, &host_calls), Some((true, false)));
    for i in [0, 65, 66, 131] {
        raw[i] ^= 0x01;
        let bad = format!("{input}.{}", jwt_filter::jose::base64url::encode(&raw));
        assert_eq!(
            verdicts(&set, &bad, &host_calls),
            Some((false, false)),
            "byte {i}"
        );
        raw[i] ^= 0x01;
    }
    // Signatures of another length (P-256's, DER, one byte short or long) are refused
    // without asking the host.
    let asked = host_calls.get();
    for len in [64, 96, 131, 133, 139] {
        let bad = format!(
            "{input}.{}",
            jwt_filter::jose::base64url::encode(&vec![1; len])
        );
        assert_eq!(
            verdicts(&set, &bad, &host_calls),
            Some((false, false)),
            "{len}"
        );
    }
    assert_eq!(host_calls.get(), asked);
    assert_eq!(asked, 5);
    // A host without the function: the wasm path decides, and refuses every ES512 token.
    let absent = HostCrypto {
        call: |_: &[u8]| None,
    };
    let parsed = jws::parse(&good).unwrap();
    let key = set.select(None, Algorithm::ES512).unwrap();
    assert!(!absent.verify(
        Algorithm::ES512,
        key,
        parsed.signing_input.as_bytes(),
        &parsed.signature
    ));
}

#[test]
fn without_the_host_function_the_wasm_path_decides() {
    let doc = json!({"keys": [{"kty": "oct", "k": jwt_filter::jose::base64url::encode(&[1; 32])}]});
    let set = KeySet::from_object(doc.as_object().unwrap(), Origin::Config)
        .unwrap()
        .set;
    let key = &set.keys()[0];
    let absent = HostCrypto {
        call: |_: &[u8]| None,
    };
    let always_yes = HostCrypto {
        call: |_: &[u8]| Some(vec![0x08, 0x01]),
    };
    // HMAC never goes to the host, whatever it would say.
    assert!(!always_yes.verify(Algorithm::HS256, key, b"x", &[0; 32]));
    assert!(!absent.verify(Algorithm::HS256, key, b"x", &[0; 32]));
}
