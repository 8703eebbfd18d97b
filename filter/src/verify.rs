//! Signature verification: the one place where crypto happens, behind a trait so that the
//! host's native verifier (Envoy's `verify_signature` foreign function) can stand in for
//! the in-wasm one where it is able to.

use crate::jwks::{Key, Material};
use crate::spki;
use jsonwebtoken::Algorithm;
use ring::hmac;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};

pub trait SignatureVerifier {
    /// Whether `signature` over `message` is valid for `key` under `alg`. The key has
    /// already been chosen for `alg` (`Key::fits`); any error is a failed verification.
    fn verify(&self, alg: Algorithm, key: &Key, message: &[u8], signature: &[u8]) -> bool;
}

/// The in-wasm verifier, on `ring` (the fastest and smallest candidate measured in V8, see
/// `bench/crypto-candidates.md`). ECDSA signatures must be JOSE's fixed-size `r || s` with
/// scalars in range, so zero ("psychic") or DER signatures fail; RSA keys must have 2048 to
/// 8192 bits; HMAC compares in constant time.
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
            (Material::Ed25519(x), Algorithm::EdDSA) => public(&signature::ED25519, x),
            (Material::Oct(secret), Algorithm::HS256) => mac(hmac::HMAC_SHA256, secret),
            (Material::Oct(secret), Algorithm::HS384) => mac(hmac::HMAC_SHA384, secret),
            (Material::Oct(secret), Algorithm::HS512) => mac(hmac::HMAC_SHA512, secret),
            _ => false,
        }
    }
}

/// Verification by the host where it can (RS256/384/512, ES256/384: BoringSSL at native
/// speed in Envoy), in wasm for the rest (PS*, EdDSA, HS*) or when the host cannot answer.
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
/// (not PKCS#1 v1.5 RSA or ECDSA), `Err` for an ECDSA signature that is not a valid
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
        (Algorithm::ES256, Material::P256(_)) | (Algorithm::ES384, Material::P384(_)) => {
            let (hash, size) = if alg == Algorithm::ES256 {
                ("sha256", 64)
            } else {
                ("sha384", 96)
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
    while i < answer.len() {
        let tag = answer[i];
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
