//! Conformance against Project Wycheproof's JOSE vectors (`tests/wycheproof/`,
//! or `$WYCHEPROOF_DIR`): the key set of each group is loaded the way the filter loads
//! keys, and each token goes through the format and signature stages. Every invalid case
//! must be refused; every valid case must pass, except the few listed in `DIFFERENCES`,
//! which the filter refuses on purpose (the README explains each).

mod support;

use jwt_filter::jwks::KeySet;
use jwt_filter::jws;
use jwt_filter::verify::{InWasm, SignatureVerifier};
use support::{group_key_set, wycheproof};

/// Valid-labelled vectors the filter refuses, with the reason.
const DIFFERENCES: &[(u64, &str)] = &[
    (
        346,
        "the JWK's own 'alg' (RS256) differs from the token's PS384: a key verifies its own algorithm only",
    ),
    (347, "ES512 (P-521) is not supported"),
    (350, "the JWK's own 'alg' differs from the token's PS384"),
    (351, "ES512 (P-521) is not supported"),
    (372, "characters outside the base64url alphabet"),
    (373, "characters outside the base64url alphabet"),
];

/// Invalid-labelled vectors that, in this copy of the data, are byte for byte the valid
/// vector named second (their padding was lost): no verifier can tell them apart.
const IDENTICAL_TO_VALID: &[(u64, u64)] = &[(367, 357), (370, 357)];

/// Whether the token passes the format and signature stages with `set`.
fn accepts(set: &KeySet, token: &str) -> bool {
    let Ok(parsed) = jws::parse(token) else {
        return false;
    };
    let Ok(key) = set.select(parsed.kid.as_deref(), parsed.alg) else {
        return false;
    };
    InWasm.verify(
        parsed.alg,
        key,
        parsed.signing_input.as_bytes(),
        &parsed.signature,
    )
}

/// Runs one file; returns (cases, valid ids refused, invalid ids accepted).
fn run(file: &str) -> (usize, Vec<u64>, Vec<u64>) {
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
                .is_ok_and(|s| accepts(s, test["jws"].as_str().unwrap()));
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

#[test]
fn json_web_signature_vectors() {
    let (cases, refused, accepted) = run("json_web_signature_test.json");
    assert_eq!(cases, 401);
    assert!(
        accepted.is_empty(),
        "invalid vectors accepted: {accepted:?}"
    );
    let expected: Vec<u64> = DIFFERENCES.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        refused, expected,
        "valid vectors refused (beyond the documented differences)"
    );
}

#[test]
fn json_web_key_vectors() {
    let (cases, refused, accepted) = run("json_web_key_test.json");
    assert_eq!(cases, 26);
    assert!(
        accepted.is_empty(),
        "invalid vectors accepted: {accepted:?}"
    );
    assert!(refused.is_empty(), "valid vectors refused: {refused:?}");
}
