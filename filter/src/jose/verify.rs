//! Signature verification: the one place where crypto happens, behind a trait so that the
//! host's native verifier (Envoy's `verify_signature` foreign function) can stand in for
//! the in-wasm one where it is able to.

use crate::jose::alg::Algorithm;
use crate::jose::jwks::{Key, Material};
use crate::jose::spki;
use ring::hmac;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};

/// Whether the in-wasm verifier can check `alg`: every algorithm but ES512 (P-521), which
/// only the host's `verify_signature` verifies (`InWasm`).
pub fn in_wasm(alg: Algorithm) -> bool {
    alg != Algorithm::ES512
}

pub trait SignatureVerifier {
    /// Whether `signature` over `message` is valid for `key` under `alg`. The key has
    /// already been chosen for `alg` (`Key::fits`); any error is a failed verification.
    fn verify(&self, alg: Algorithm, key: &Key, message: &[u8], signature: &[u8]) -> bool;
}

/// The in-wasm verifier, on `ring` (the fastest and smallest candidate measured in V8, see
/// `bench/crypto-candidates.md`), and `k256` for ES256K, which `ring` lacks. ECDSA
/// signatures must be JOSE's fixed-size `r || s` with scalars in range, so zero
/// ("psychic") or DER signatures fail; RSA keys must have 2048 to 8192 bits; HMAC compares
/// in constant time. ES512 is never verified here: P-521 in wasm would cost about 60 KB of
/// the module (measured with the `p521` crate), so an ES512 signature only verifies
/// through the host (`HostCrypto`), and here it fails (closed).
pub struct InWasm;

impl SignatureVerifier for InWasm {
    fn verify(&self, alg: Algorithm, key: &Key, message: &[u8], signature: &[u8]) -> bool {
        let public = |algorithm: &'static dyn VerificationAlgorithm, bytes: &[u8]| {
            UnparsedPublicKey::new(algorithm, bytes)
                .verify(message, signature)
                .is_ok()
        };
        let mac = |algorithm, secret: &[u8]| {
            hmac::verify(&hmac::Key::new(algorithm, secret), message, signature).is_ok()
        };
        match (&*key.material, alg) {
            (Material::Rsa { n, e }, alg) => {
                let params = match alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
            (Material::P256(point), Algorithm::ES256) => {
                public(&signature::ECDSA_P256_SHA256_FIXED, point)
            }
            (Material::P384(point), Algorithm::ES384) => {
                public(&signature::ECDSA_P384_SHA384_FIXED, point)
            }
            (Material::Secp256k1(point), Algorithm::ES256K) => es256k(point, message, signature),
            (Material::Ed25519(x), Algorithm::EdDSA) => public(&signature::ED25519, x),
            (Material::Oct(secret), Algorithm::HS256) => mac(hmac::HMAC_SHA256, secret),
            (Material::Oct(secret), Algorithm::HS384) => mac(hmac::HMAC_SHA384, secret),
            (Material::Oct(secret), Algorithm::HS512) => mac(hmac::HMAC_SHA512, secret),
            _ => false,
        }
    }
}

/// ES256K (RFC 8812): ECDSA on secp256k1 over the SHA-256 of `message` (`ring`'s, so that
/// the module carries no second SHA-256), with `k256`'s curve arithmetic. The signature is
/// exactly 64 bytes, `r` and `s` in `[1, n - 1]`. A high `s` (above n/2) is accepted, as
/// for ES256/ES384 here and in BoringSSL: neither ECDSA (FIPS 186) nor RFC 8812 asks for
/// low `s`, and issuers whose ECDSA comes from OpenSSL (Node, Python, Java libraries)
/// produce high `s` about half the time. Its only effect, a second valid encoding of a
/// signature, gives a token's holder nothing: a token is cached by its whole bytes, and
/// DPoP replays are recognised by the proof's key and `jti`, not its signature. (`k256`'s
/// own `verify` refuses high `s`, Bitcoin's rule; so it is not used.)
fn es256k(point: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(key), Ok(signature)) = (
        k256::PublicKey::from_sec1_bytes(point),
        ecdsa::Signature::<k256::Secp256k1>::from_slice(signature),
    ) else {
        return false;
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, message);
    let Ok(z) = <[u8; 32]>::try_from(digest.as_ref()) else {
        return false;
    };
    ecdsa::hazmat::verify_prehashed::<k256::Secp256k1>(&key.to_projective(), &z.into(), &signature)
        .is_ok()
}

/// Verification by the host where it can (RS256/384/512, ES256/384/512: BoringSSL at
/// native speed in Envoy), in wasm for the rest (PS*, ES256K, EdDSA, HS*) or when the host
/// cannot answer (then ES512 fails: see `InWasm`).
/// `call` sends `VerifySignatureArguments` and returns the host's answer bytes, or `None`
/// when the host has no such function.
pub struct HostCrypto<F> {
    pub call: F,
}

impl<F: Fn(&[u8]) -> Option<Vec<u8>>> SignatureVerifier for HostCrypto<F> {
    fn verify(&self, alg: Algorithm, key: &Key, message: &[u8], signature: &[u8]) -> bool {
        let Some(request) = host_request(alg, key, message, signature) else {
            return InWasm.verify(alg, key, message, signature);
        };
        match request {
            // A signature that cannot even be re-encoded is invalid; no need to ask.
            Err(()) => false,
            Ok(args) => match (self.call)(&args) {
                Some(answer) => verify_result(&answer),
                None => InWasm.verify(alg, key, message, signature),
            },
        }
    }
}

/// The `verify_signature` arguments for this check, `None` when the host cannot do it
/// (not PKCS#1 v1.5 RSA or ECDSA on a NIST curve), `Err` for an ECDSA signature that is not a valid
/// JOSE `r || s` (zero or out-of-range scalars: the "psychic signature" cases).
fn host_request(
    alg: Algorithm,
    key: &Key,
    message: &[u8],
    signature: &[u8],
) -> Option<Result<Vec<u8>, ()>> {
    let der = key.spki_der.as_deref()?;
    let (hash, signature) = match (alg, &*key.material) {
        (Algorithm::RS256, Material::Rsa { .. }) => ("sha256", signature.to_vec()),
        (Algorithm::RS384, Material::Rsa { .. }) => ("sha384", signature.to_vec()),
        (Algorithm::RS512, Material::Rsa { .. }) => ("sha512", signature.to_vec()),
        (Algorithm::ES256, Material::P256(_))
        | (Algorithm::ES384, Material::P384(_))
        | (Algorithm::ES512, Material::P521(_)) => {
            // JOSE's `r || s`: two scalars of the curve's size (66 bytes each for P-521).
            let (hash, size) = match alg {
                Algorithm::ES256 => ("sha256", 64),
                Algorithm::ES384 => ("sha384", 96),
                _ => ("sha512", 132),
            };
            match spki::ecdsa_signature(signature).filter(|_| signature.len() == size) {
                Some(der) => (hash, der),
                None => return Some(Err(())),
            }
        }
        _ => return None,
    };
    Some(Ok(verify_signature_arguments(
        hash, der, &signature, message,
    )))
}

/// Encodes Envoy's `VerifySignatureArguments` protobuf: `hash_function` (1, string),
/// `public_key` (2, bytes, DER), `signature` (3, bytes), `text` (4, bytes).
pub fn verify_signature_arguments(
    hash: &str,
    der: &[u8],
    signature: &[u8],
    text: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + hash.len() + der.len() + signature.len() + text.len());
    for (field, bytes) in [(1u8, hash.as_bytes()), (2, der), (3, signature), (4, text)] {
        out.push(field << 3 | 2);
        let mut len = bytes.len();
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(bytes);
    }
    out
}

/// Reads `VerifySignatureResult { bool result = 1; string error = 2; }`: true only when
/// field 1 is present and set. Anything unexpected is a failed verification.
pub fn verify_result(answer: &[u8]) -> bool {
    let mut i = 0;
    let mut result = false;
    while let Some(&tag) = answer.get(i) {
        i += 1;
        match tag {
            0x08 => {
                let Some(&value) = answer.get(i) else {
                    return false;
                };
                result = value == 1;
                i += 1;
            }
            0x12 => {
                let Some(&len) = answer.get(i) else {
                    return false;
                };
                // Error strings are short; a multi-byte length means a malformed answer.
                if len >= 0x80 {
                    return false;
                }
                i += 1 + usize::from(len);
            }
            _ => return false,
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_encode_as_protobuf() {
        let args = verify_signature_arguments("sha256", &[1, 2], &[3; 200], b"t");
        assert_eq!(&args[..8], &[0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6']);
        assert_eq!(&args[8..12], &[0x12, 2, 1, 2]);
        // 200 = 0xc8: varint c8 01.
        assert_eq!(&args[12..15], &[0x1a, 0xc8, 0x01]);
        assert_eq!(&args[args.len() - 3..], &[0x22, 1, b't']);
    }

    use crate::jose::jwks::{KeySet, Origin};
    use crate::testkit;
    use serde_json::json;

    /// The key of test key `name` and a token it signed, as (key, signing input, signature).
    fn signed(name: &str, alg: Algorithm) -> (Key, String, Vec<u8>) {
        let doc = json!({"keys": [testkit::public_jwk(name, "k")]});
        let set = KeySet::from_object(doc.as_object().unwrap(), Origin::Remote)
            .unwrap()
            .set;
        let token = testkit::sign(name, &json!({"alg": alg.name()}), &json!({"sub": "x"}));
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = crate::jose::base64url::decode(signature).unwrap();
        (set.keys()[0].clone(), input.to_string(), signature)
    }

    #[test]
    fn es256k_verifies_in_wasm_high_s_included() {
        use k256::elliptic_curve::ops::Reduce;
        let (key, input, sig) = signed("secp256k1", Algorithm::ES256K);
        let verify = |alg, sig: &[u8]| InWasm.verify(alg, &key, input.as_bytes(), sig);
        assert!(verify(Algorithm::ES256K, &sig));
        // The same signature with s replaced by n - s (high s): valid ECDSA, accepted.
        let low = ecdsa::Signature::<k256::Secp256k1>::from_slice(&sig).unwrap();
        let high = ecdsa::Signature::<k256::Secp256k1>::from_scalars(low.r(), -*low.s()).unwrap();
        assert_ne!(high.to_bytes(), low.to_bytes());
        assert!(verify(Algorithm::ES256K, &high.to_bytes()));
        // Never under another algorithm, nor with a tampered message or signature.
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::ES512] {
            assert!(!verify(alg, &sig));
        }
        assert!(!InWasm.verify(Algorithm::ES256K, &key, b"other", &sig));
        for i in [0, 31, 32, 63] {
            let mut bad = sig.clone();
            bad[i] ^= 1;
            assert!(!verify(Algorithm::ES256K, &bad), "byte {i}");
        }
        // Exactly 64 bytes; r and s in [1, n - 1]; not DER.
        let n = k256::Scalar::reduce(k256::U256::ZERO) - k256::Scalar::ONE; // n - 1
        let n_minus_1: [u8; 32] = n.to_bytes().into();
        let mut at_n = n_minus_1;
        at_n[31] += 1; // n itself
        let r = &sig[..32];
        for bad in [
            sig[..63].to_vec(),
            [&sig[..], &[0]].concat(),
            [&[0; 32][..], &sig[32..]].concat(),
            [r, &[0; 32][..]].concat(),
            [r, &at_n[..]].concat(),
            [&at_n[..], &sig[32..]].concat(),
            low.to_der().as_bytes().to_vec(),
            vec![0; 64],
        ] {
            assert!(!verify(Algorithm::ES256K, &bad), "{bad:?}");
        }
    }

    #[test]
    fn es256k_never_goes_to_the_host() {
        let (key, input, sig) = signed("secp256k1", Algorithm::ES256K);
        let asked = std::cell::Cell::new(false);
        let host = HostCrypto {
            call: |_: &[u8]| {
                asked.set(true);
                Some(vec![0x08, 0x01])
            },
        };
        assert!(host.verify(Algorithm::ES256K, &key, input.as_bytes(), &sig));
        assert!(!host.verify(Algorithm::ES256K, &key, b"other", &sig));
        assert!(!asked.get());
    }

    #[test]
    fn es512_goes_to_the_host_as_der_with_sha512() {
        let (key, input, sig) = signed("p521", Algorithm::ES512);
        assert_eq!(sig.len(), 132);
        // Never verified in wasm.
        assert!(!InWasm.verify(Algorithm::ES512, &key, input.as_bytes(), &sig));
        let Some(Ok(args)) = host_request(Algorithm::ES512, &key, input.as_bytes(), &sig) else {
            panic!("ES512 is the host's");
        };
        let der = spki::ecdsa_signature(&sig).unwrap();
        let want = verify_signature_arguments(
            "sha512",
            key.spki_der.as_deref().unwrap(),
            &der,
            input.as_bytes(),
        );
        assert_eq!(args, want);
        let back = p521::ecdsa::Signature::from_der(&der).unwrap().to_bytes();
        assert_eq!(&back[..], &sig[..]);
        // 132 bytes exactly, no zero scalar: anything else is refused before the host.
        for bad in [
            sig[..131].to_vec(),
            [&sig[..], &[0]].concat(),
            sig[..64].to_vec(),
            sig[..96].to_vec(),
            [&[0; 66][..], &sig[66..]].concat(),
            vec![0; 132],
        ] {
            assert_eq!(
                host_request(Algorithm::ES512, &key, input.as_bytes(), &bad),
                Some(Err(())),
                "{}",
                bad.len()
            );
        }
        // The host's answer decides; without the function (None) the wasm path refuses.
        let yes = HostCrypto {
            call: |_: &[u8]| Some(vec![0x08, 0x01]),
        };
        let absent = HostCrypto {
            call: |_: &[u8]| None,
        };
        assert!(yes.verify(Algorithm::ES512, &key, input.as_bytes(), &sig));
        assert!(!yes.verify(Algorithm::ES512, &key, input.as_bytes(), &sig[..131]));
        assert!(!absent.verify(Algorithm::ES512, &key, input.as_bytes(), &sig));
        assert!(!in_wasm(Algorithm::ES512));
        assert!(Algorithm::ALL.iter().filter(|a| !in_wasm(**a)).count() == 1);
    }

    #[test]
    fn results_decode_strictly() {
        assert!(verify_result(&[0x08, 0x01]));
        assert!(verify_result(&[0x08, 0x01, 0x12, 0x00]));
        assert!(!verify_result(&[0x08, 0x00]));
        assert!(!verify_result(&[0x12, 0x03, b'b', b'a', b'd']));
        assert!(!verify_result(&[]));
        assert!(!verify_result(&[0x08]));
        assert!(!verify_result(&[0x1a, 0x01, 0x01, 0x08, 0x01]));
    }
}
