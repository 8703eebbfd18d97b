//! Conformance against Project Wycheproof's JOSE vectors (`tests/wycheproof/`,
//! or `$WYCHEPROOF_DIR`): the key set of each group is loaded the way the filter loads
//! keys, and each token goes through the format and signature stages, with the host's
//! `verify_signature` (a native stand-in for Envoy's, `jwt_filter_testkit::host`) and without it (in
//! wasm). Every invalid case must be refused; every valid case must pass, except the few
//! listed in `DIFFERENCES` (both paths) and `IN_WASM_DIFFERENCES` (in wasm only), which the
//! filter refuses on purpose (docs/security.md, "Conformance", explains each).
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

use jwt_filter::jose::jwks::KeySet;
use jwt_filter::jose::jws;
use jwt_filter::jose::verify::{HostCrypto, InWasm, SignatureVerifier};
use jwt_filter_testkit::host::native_verify_signature;
use jwt_filter_testkit::wycheproof;
use support::group_key_set;

/// Valid-labelled vectors the filter refuses, with the reason.
const DIFFERENCES: &[(u64, &str)] = &[
    (
        346,
        "the JWK's own 'alg' (RS256) differs from the token's PS384: a key verifies its own algorithm only",
    ),
    (350, "the JWK's own 'alg' differs from the token's PS384"),
    (372, "characters outside the base64url alphabet"),
    (373, "characters outside the base64url alphabet"),
];

/// Valid-labelled vectors refused only where signatures are verified in wasm (no host
/// `verify_signature`, or `host_crypto: false`).
const IN_WASM_DIFFERENCES: &[(u64, &str)] = &[
    (
        347,
        "ES512 (RFC 7520 figure 27): P-521 is verified by the host only, never in wasm",
    ),
    (
        351,
        "ES512 (RFC 7520 figure 27): P-521 is verified by the host only, never in wasm",
    ),
];

/// Invalid-labelled vectors that, in this copy of the data, are byte for byte the valid
/// vector named second (their padding was lost): no verifier can tell them apart.
const IDENTICAL_TO_VALID: &[(u64, u64)] = &[(367, 357), (370, 357)];

/// Whether the token passes the format and signature stages with `set`.
fn accepts(set: &KeySet, token: &str, verifier: &dyn SignatureVerifier) -> bool {
    let Ok(parsed) = jws::parse(token) else {
        return false;
    };
    let Ok(key) = set.select(parsed.kid.as_deref(), parsed.alg) else {
        return false;
    };
    verifier.verify(
        parsed.alg,
        key,
        parsed.signing_input.as_bytes(),
        &parsed.signature,
    )
}

/// Runs one file; returns (cases, valid ids refused, invalid ids accepted).
fn run(file: &str, verifier: &dyn SignatureVerifier) -> (usize, Vec<u64>, Vec<u64>) {
    let doc = wycheproof(file);
    let token = |id: u64| {
        doc["testGroups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["tests"].as_array().unwrap())
            .find(|t| t["tcId"] == id)
            .map(|t| t["jws"].clone())
    };
    for (copy, valid) in IDENTICAL_TO_VALID {
        if let (Some(a), Some(b)) = (token(*copy), token(*valid)) {
            assert_eq!(
                a, b,
                "tcId {copy} is no longer identical to {valid}: drop the exception"
            );
        }
    }
    let (mut cases, mut refused, mut accepted) = (0, Vec::new(), Vec::new());
    for group in doc["testGroups"].as_array().unwrap() {
        let set = group_key_set(group);
        for test in group["tests"].as_array().unwrap() {
            cases += 1;
            let id = test["tcId"].as_u64().unwrap();
            let ok = set
                .as_ref()
                .is_ok_and(|s| accepts(s, test["jws"].as_str().unwrap(), verifier));
            let identical = IDENTICAL_TO_VALID.iter().any(|(copy, _)| *copy == id);
            match (test["result"].as_str().unwrap(), ok) {
                ("valid", false) => refused.push(id),
                ("invalid", true) if !identical => accepted.push(id),
                _ => {}
            }
        }
    }
    (cases, refused, accepted)
}

/// The host path: Envoy's `verify_signature` where it can (RS*, ES256/384/512), in wasm
/// for the rest.
fn host() -> impl SignatureVerifier {
    HostCrypto {
        call: native_verify_signature,
    }
}

fn ids(list: &[(u64, &str)]) -> Vec<u64> {
    list.iter().map(|(id, _)| *id).collect()
}

#[test]
fn json_web_signature_vectors_with_the_host() {
    let (cases, refused, accepted) = run("json_web_signature_test.json", &host());
    assert_eq!(cases, 401);
    assert!(
        accepted.is_empty(),
        "invalid vectors accepted: {accepted:?}"
    );
    assert_eq!(
        refused,
        ids(DIFFERENCES),
        "valid vectors refused (beyond the documented differences)"
    );
}

#[test]
fn json_web_signature_vectors_in_wasm() {
    let (cases, refused, accepted) = run("json_web_signature_test.json", &InWasm);
    assert_eq!(cases, 401);
    assert!(
        accepted.is_empty(),
        "invalid vectors accepted: {accepted:?}"
    );
    let mut expected = [ids(DIFFERENCES), ids(IN_WASM_DIFFERENCES)].concat();
    expected.sort();
    assert_eq!(
        refused, expected,
        "valid vectors refused (beyond the documented differences)"
    );
}

#[test]
fn json_web_key_vectors() {
    for verifier in [&host() as &dyn SignatureVerifier, &InWasm] {
        let (cases, refused, accepted) = run("json_web_key_test.json", verifier);
        assert_eq!(cases, 26);
        assert!(
            accepted.is_empty(),
            "invalid vectors accepted: {accepted:?}"
        );
        assert!(refused.is_empty(), "valid vectors refused: {refused:?}");
    }
}
