//! Differential test: the host-accelerated path (`HostCrypto`, which encodes Envoy's
//! `verify_signature` arguments) and the in-wasm path (`InWasm`) give the same verdict
//! on every Wycheproof JWS vector and on the project's own keys, valid and tampered.
//! The host side here is a native stand-in for Envoy's function: it decodes the protobuf
//! arguments and verifies PKCS#1 v1.5 RSA or DER-encoded ECDSA against the DER key, as
//! BoringSSL's `EVP_DigestVerify` does.

mod support;

use jwt_filter::jwks::{KeySet, Origin};
use jwt_filter::jws;
use jwt_filter::verify::{HostCrypto, InWasm, SignatureVerifier};
use p256::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::json;
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::cell::Cell;
use support::{group_key_set, keys, wycheproof};

/// Reads the length-delimited fields 1..4 of `VerifySignatureArguments`.
fn fields(mut args: &[u8]) -> Option<[Vec<u8>; 4]> {
    let mut out: [Vec<u8>; 4] = Default::default();
    while let Some((&tag, rest)) = args.split_first() {
        let (mut len, mut shift, mut i) = (0usize, 0, 0);
        loop {
            let b = *rest.get(i)?;
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            i += 1;
            if b < 0x80 {
                break;
            }
        }
        let field = usize::from(tag >> 3);
        let value = rest.get(i..i + len)?;
        *out.get_mut(field.checked_sub(1)?)? = value.to_vec();
        args = &rest[i + len..];
    }
    Some(out)
}

/// A native `verify_signature`: `08 01` when valid, `08 00` otherwise.
fn native_verify_signature(args: &[u8]) -> Option<Vec<u8>> {
    let [hash, der, signature, text] = fields(args)?;
    let ok = match std::str::from_utf8(&hash).ok()? {
        "sha256" | "sha384" | "sha512" => verify_der(&hash, &der, &signature, &text),
        _ => false,
    };
    Some(vec![0x08, u8::from(ok)])
}

fn verify_der(hash: &[u8], der: &[u8], signature: &[u8], text: &[u8]) -> bool {
    if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(der) {
        use rsa::Pkcs1v15Sign;
        return match hash {
            b"sha256" => key.verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(text),
                signature,
            ),
            b"sha384" => key.verify(
                Pkcs1v15Sign::new::<Sha384>(),
                &Sha384::digest(text),
                signature,
            ),
            _ => key.verify(
                Pkcs1v15Sign::new::<Sha512>(),
                &Sha512::digest(text),
                signature,
            ),
        }
        .is_ok();
    }
    if let (Ok(key), b"sha256") = (p256::ecdsa::VerifyingKey::from_public_key_der(der), hash) {
        return p256::ecdsa::DerSignature::try_from(signature)
            .is_ok_and(|s| key.verify(text, &s).is_ok());
    }
    if let (Ok(key), b"sha384") = (p384::ecdsa::VerifyingKey::from_public_key_der(der), hash) {
        return p384::ecdsa::DerSignature::try_from(signature)
            .is_ok_and(|s| key.verify(text, &s).is_ok());
    }
    false
}

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
    let (mut compared, mut valid) = (0, 0);
    let vectors = wycheproof("json_web_signature_test.json");
    for group in vectors["testGroups"].as_array().unwrap() {
        let Ok(set) = group_key_set(group) else {
            continue;
        };
        for test in group["tests"].as_array().unwrap() {
            if let Some((host, wasm)) = verdicts(&set, test["jws"].as_str().unwrap(), &host_calls) {
                assert_eq!(host, wasm, "tcId {}", test["tcId"]);
                compared += 1;
                valid += usize::from(host);
            }
        }
    }
    // Most vectors reach the signature stage, and the host really was asked (RS/ES).
    assert!(compared > 300, "{compared}");
    assert!(valid >= 30, "{valid}");
    assert!(host_calls.get() > 200, "{}", host_calls.get());
}

#[test]
fn both_paths_agree_on_the_projects_keys() {
    use jsonwebtoken::Algorithm;
    let host_calls = Cell::new(0);
    for (name, alg) in [
        ("rsa-a", Algorithm::RS256),
        ("rsa-b", Algorithm::RS384),
        ("rsa-a", Algorithm::RS512),
        ("rsa-b", Algorithm::PS256),
        ("ec256", Algorithm::ES256),
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
        let mut raw = jwt_filter::base64url::decode(signature).unwrap();
        assert_eq!(
            verdicts(&set, &good, &host_calls),
            Some((true, true)),
            "{name} {alg:?}"
        );
        for i in [0, raw.len() / 2, raw.len() - 1] {
            raw[i] ^= 0x01;
            let bad = format!("{input}.{}", jwt_filter::base64url::encode(&raw));
            assert_eq!(
                verdicts(&set, &bad, &host_calls),
                Some((false, false)),
                "{name} {alg:?} byte {i}"
            );
            raw[i] ^= 0x01;
        }
    }
    // RS256, RS384, RS512 and ES256 went to the host (4 each); PS256 stayed in wasm.
    assert_eq!(host_calls.get(), 16);
}

#[test]
fn without_the_host_function_the_wasm_path_decides() {
    let doc = json!({"keys": [{"kty": "oct", "k": jwt_filter::base64url::encode(&[1; 32])}]});
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
    assert!(!always_yes.verify(jsonwebtoken::Algorithm::HS256, key, b"x", &[0; 32]));
    assert!(!absent.verify(jsonwebtoken::Algorithm::HS256, key, b"x", &[0; 32]));
}
