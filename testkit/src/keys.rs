//! The project's fixed test keys (`tests/keys/`), their public JWKs, and a signer for tokens
//! with any header and claims. The filter's unit tests see this module as `crate::testkit`;
//! the integration tests and the benchmark as `jwt_filter_testkit::keys`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

pub const NOW: u64 = 1_700_000_000;

/// Canonical base64url, as JOSE wants it.
fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn pem(name: &str) -> String {
    let path = format!("{}/../tests/keys/{name}.pem", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The P-521 key `p521` and the secp256k1 key `secp256k1`: fixed scalars (no PEM files).
fn p521_key() -> p521::ecdsa::SigningKey {
    let mut scalar = [0x5a; 66];
    scalar[0] = 0;
    p521::ecdsa::SigningKey::from_slice(&scalar).unwrap()
}

fn secp256k1_key() -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(&[0x5a; 32]).unwrap()
}

/// The uncompressed point of an EC key as a JWK (`x`, `y` of equal size).
fn ec_jwk(crv: &str, kid: &str, point: &[u8]) -> Value {
    let (x, y) = point[1..].split_at((point.len() - 1) / 2);
    json!({"kty": "EC", "crv": crv, "kid": kid, "x": b64(x), "y": b64(y)})
}

/// The public JWK of test key `name` (`rsa-a`, `rsa-b`, `ec256`, `ed25519`, `p521`,
/// `secp256k1`), with `kid`.
pub fn public_jwk(name: &str, kid: &str) -> Value {
    if name == "p521" {
        let point = p521::ecdsa::VerifyingKey::from(&p521_key()).to_encoded_point(false);
        return ec_jwk("P-521", kid, point.as_bytes());
    }
    if name == "secp256k1" {
        let point = secp256k1_key().verifying_key().to_encoded_point(false);
        return ec_jwk("secp256k1", kid, point.as_bytes());
    }
    let text = pem(name);
    if name.starts_with("rsa") {
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&text).unwrap();
        json!({"kty": "RSA", "kid": kid, "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())})
    } else if name.starts_with("ec") {
        use p256::pkcs8::DecodePrivateKey;
        let key = p256::SecretKey::from_pkcs8_pem(&pem("ec256.p8")).unwrap();
        let point = key.public_key().to_sec1_bytes();
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&point[1..33]), "y": b64(&point[33..])})
    } else {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&text).unwrap();
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(key.verifying_key().as_bytes())})
    }
}

/// Signs `header` (which must name `alg`) and `claims` with test key `name`. `p521` signs
/// ES512 and `secp256k1` ES256K (low `s`), whatever the header says; the other keys sign
/// with the header's `alg` where they can, else with their own.
pub fn sign(name: &str, header: &Value, claims: &Value) -> String {
    if name == "p521" || name == "secp256k1" {
        use k256::ecdsa::signature::Signer;
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = if name == "p521" {
            let signature: p521::ecdsa::Signature = p521_key().sign(input.as_bytes());
            signature.to_bytes().to_vec()
        } else {
            let signature: k256::ecdsa::Signature = secp256k1_key().sign(input.as_bytes());
            signature.to_bytes().to_vec()
        };
        return format!("{input}.{}", b64(&signature));
    }
    // An algorithm `jsonwebtoken` does not know (ES512, ES256K under another key): the
    // key's own, for tokens that must be refused before their signature is checked.
    let alg: Algorithm = header["alg"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap_or(match name {
            n if n.starts_with("rsa") => Algorithm::RS256,
            n if n.starts_with("ec") => Algorithm::ES256,
            n if n.starts_with("ed") => Algorithm::EdDSA,
            _ => Algorithm::HS256,
        });
    let key = match name {
        n if n.starts_with("rsa") => EncodingKey::from_rsa_pem(pem(n).as_bytes()).unwrap(),
        n if n.starts_with("ec") => EncodingKey::from_ec_pem(pem("ec256.p8").as_bytes()).unwrap(),
        n if n.starts_with("ed") => EncodingKey::from_ed_pem(pem(n).as_bytes()).unwrap(),
        secret => EncodingKey::from_secret(secret.as_bytes()),
    };
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).unwrap();
    format!("{input}.{signature}")
}
