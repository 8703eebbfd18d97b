//! Signature verification: the one place where crypto happens, behind a trait so that a
//! host-provided verifier (Envoy's `verify_signature`) can stand in for the in-wasm one.

use crate::jwks::Key;
use jsonwebtoken::Algorithm;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;

pub trait SignatureVerifier {
    /// Whether `signature` over `message` is valid for `key` under `alg`. The key has
    /// already been chosen for `alg` (`Key::fits`); any error is a failed verification.
    fn verify(&self, alg: Algorithm, key: &Key, message: &[u8], signature: &[u8]) -> bool;
}

/// The in-wasm verifier: `jsonwebtoken`'s RustCrypto backend (`rsa`, `p256`, `p384`,
/// `ed25519-dalek`, `hmac`), with each key prepared once when its set loads.
pub struct RustCrypto;

impl SignatureVerifier for RustCrypto {
    fn verify(&self, alg: Algorithm, key: &Key, message: &[u8], signature: &[u8]) -> bool {
        match (DEFAULT_PROVIDER.verifier_factory)(&alg, &key.decoding) {
            Ok(verifier) => verifier.verify(message, &signature.to_vec()).is_ok(),
            Err(_) => false,
        }
    }
}
