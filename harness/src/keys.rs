//! Named signing keys: generated deterministically from a name, or loaded from a PEM file.
//!
//! Naming scheme (a "key spec"):
//! - `NAME`: RSA-2048, `kid` = NAME, default alg RS256.
//! - `rsa1024:NAME`, `rsa2048:NAME`, `rsa3072:NAME`, `rsa4096:NAME`: RSA of that size.
//! - `ps256:NAME`: RSA-2048 published and signing as PS256.
//! - `hs256:NAME`: a 32-byte HMAC secret, HS256, published as an `oct` JWK.
//! - `ec256:NAME` (P-256, ES256), `ec384:NAME` (P-384, ES384), `ec521:NAME` (P-521, ES512),
//!   `secp256k1:NAME` (secp256k1, ES256K), `ed25519:NAME` (EdDSA).
//! - A spec ending in `.pem` (or containing `/`) is a PKCS#8, PKCS#1 (RSA) or SEC1 (EC)
//!   private key file;
//!   `kid` = the file stem.
//!
//! For prefixed names the `kid` is the part after the colon. The same spec always gives the
//! same key (the RNG is seeded with a hash of the spec).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The private part of a named key.
pub enum Material {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    Secp256k1(k256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    /// A shared HMAC secret (published as an `oct` JWK, for `local_jwks`).
    Hmac(Vec<u8>),
}

/// A signing key with its `kid`.
pub struct NamedKey {
    pub kid: String,
    pub material: Material,
    /// An RSA key published for PS256 rather than RS256.
    pub pss: bool,
}

impl NamedKey {
    /// The algorithm a token signed by this key uses unless its header says otherwise.
    pub fn default_alg(&self) -> &'static str {
        match self.material {
            Material::Rsa(_) if self.pss => "PS256",
            Material::Rsa(_) => "RS256",
            Material::P256(_) => "ES256",
            Material::P384(_) => "ES384",
            Material::P521(_) => "ES512",
            Material::Secp256k1(_) => "ES256K",
            Material::Ed25519(_) => "EdDSA",
            Material::Hmac(_) => "HS256",
        }
    }

    /// The public JWK (with `kid`, `alg` and `use`).
    pub fn public_jwk(&self) -> Value {
        let alg = self.default_alg();
        match &self.material {
            Material::Rsa(k) => json!({
                "kty": "RSA", "kid": self.kid, "alg": alg, "use": "sig",
                "n": B64.encode(k.n().to_bytes_be()), "e": B64.encode(k.e().to_bytes_be()),
            }),
            Material::P256(k) => ec_jwk(
                &self.kid,
                alg,
                "P-256",
                k.verifying_key().to_encoded_point(false).as_bytes(),
            ),
            Material::P384(k) => ec_jwk(
                &self.kid,
                alg,
                "P-384",
                k.verifying_key().to_encoded_point(false).as_bytes(),
            ),
            Material::P521(k) => ec_jwk(
                &self.kid,
                alg,
                "P-521",
                p521::ecdsa::VerifyingKey::from(k)
                    .to_encoded_point(false)
                    .as_bytes(),
            ),
            Material::Secp256k1(k) => ec_jwk(
                &self.kid,
                alg,
                "secp256k1",
                k.verifying_key().to_encoded_point(false).as_bytes(),
            ),
            Material::Hmac(secret) => json!({
                "kty": "oct", "kid": self.kid, "alg": alg, "use": "sig", "k": B64.encode(secret),
            }),
            Material::Ed25519(k) => json!({
                "kty": "OKP", "crv": "Ed25519", "kid": self.kid, "alg": alg, "use": "sig",
                "x": B64.encode(k.verifying_key().as_bytes()),
            }),
        }
    }

    /// Signs `input` with `alg`. Supported: RS*/PS* (RSA keys), ES256/ES384/ES512/ES256K (EC
    /// keys, each on its curve; ES256K with low `s`, as libsecp256k1 signs), EdDSA,
    /// HS* with an `hs256:` secret, and HS* with any other key's public JWK JSON as the secret
    /// (for key-confusion tests).
    pub fn sign(&self, alg: &str, input: &[u8]) -> Result<Vec<u8>> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
        let mut rng = ChaCha20Rng::from_seed(Sha256::digest(input).into());
        Ok(match (&self.material, alg) {
            (Material::Rsa(k), "RS256") => rsa_pkcs1::<Sha256>(k, input),
            (Material::Rsa(k), "RS384") => rsa_pkcs1::<Sha384>(k, input),
            (Material::Rsa(k), "RS512") => rsa_pkcs1::<Sha512>(k, input),
            (Material::Rsa(k), "PS256") => {
                rsa::pss::BlindedSigningKey::<Sha256>::new((**k).clone())
                    .sign_with_rng(&mut rng, input)
                    .to_vec()
            }
            (Material::Rsa(k), "PS384") => {
                rsa::pss::BlindedSigningKey::<Sha384>::new((**k).clone())
                    .sign_with_rng(&mut rng, input)
                    .to_vec()
            }
            (Material::Rsa(k), "PS512") => {
                rsa::pss::BlindedSigningKey::<Sha512>::new((**k).clone())
                    .sign_with_rng(&mut rng, input)
                    .to_vec()
            }
            (Material::P256(k), "ES256") => {
                let sig: p256::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            (Material::P384(k), "ES384") => {
                let sig: p384::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            (Material::P521(k), "ES512") => {
                let sig: p521::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            (Material::Secp256k1(k), "ES256K") => {
                let sig: k256::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            (Material::Ed25519(k), "EdDSA") => k.sign(input).to_bytes().to_vec(),
            (Material::Hmac(secret), "HS256" | "HS384" | "HS512") => hmac(alg, secret, input),
            (_, "HS256" | "HS384" | "HS512") => {
                hmac(alg, self.public_jwk().to_string().as_bytes(), input)
            }
            (_, other) => bail!("key {} cannot sign {other}", self.kid),
        })
    }
}

/// `point` is the uncompressed SEC1 encoding: `04 || x || y`.
fn ec_jwk(kid: &str, alg: &str, crv: &str, point: &[u8]) -> Value {
    let (x, y) = point
        .get(1..)
        .unwrap_or_default()
        .split_at(point.len().saturating_sub(1) / 2);
    json!({
        "kty": "EC", "crv": crv, "kid": kid, "alg": alg, "use": "sig",
        "x": B64.encode(x), "y": B64.encode(y),
    })
}

fn rsa_pkcs1<D>(key: &rsa::RsaPrivateKey, input: &[u8]) -> Vec<u8>
where
    D: Digest + rsa::pkcs8::AssociatedOid,
{
    use rsa::signature::{SignatureEncoding, Signer};
    rsa::pkcs1v15::SigningKey::<D>::new(key.clone())
        .sign(input)
        .to_vec()
}

/// HMAC (RFC 2104) over SHA-2, written out to avoid a dependency for a test-only path.
fn hmac(alg: &str, secret: &[u8], input: &[u8]) -> Vec<u8> {
    fn run<D: Digest + sha2::digest::core_api::BlockSizeUser>(
        secret: &[u8],
        input: &[u8],
    ) -> Vec<u8> {
        let block = <D as sha2::digest::core_api::BlockSizeUser>::block_size();
        let mut key = if secret.len() > block {
            D::digest(secret).to_vec()
        } else {
            secret.to_vec()
        };
        key.resize(block, 0);
        let pad = |b: u8| key.iter().map(|k| k ^ b).collect::<Vec<u8>>();
        let inner = D::new()
            .chain_update(pad(0x36))
            .chain_update(input)
            .finalize();
        D::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .to_vec()
    }
    match alg {
        "HS384" => run::<Sha384>(secret, input),
        "HS512" => run::<Sha512>(secret, input),
        _ => run::<Sha256>(secret, input),
    }
}

/// A cache of named keys: RSA generation is slow, so each spec is generated once.
#[derive(Default)]
pub struct KeyRing {
    keys: HashMap<String, Arc<NamedKey>>,
}

impl KeyRing {
    /// The key for `spec`; relative file paths are resolved against `base`.
    pub fn get(&mut self, spec: &str, base: &Path) -> Result<Arc<NamedKey>> {
        let cache_key = if is_file_spec(spec) {
            base.join(spec).to_string_lossy().into_owned()
        } else {
            spec.to_string()
        };
        if let Some(key) = self.keys.get(&cache_key) {
            return Ok(key.clone());
        }
        let key = Arc::new(if is_file_spec(spec) {
            load_file(&base.join(spec))?
        } else {
            generate(spec)?
        });
        self.keys.insert(cache_key, key.clone());
        Ok(key)
    }

    /// A JWKS `{"keys": [...]}` with the public keys of `specs`.
    pub fn jwks(&mut self, specs: &[String], base: &Path) -> Result<Value> {
        let keys = specs
            .iter()
            .map(|s| self.get(s, base).map(|k| k.public_jwk()))
            .collect::<Result<Vec<_>>>()?;
        Ok(json!({ "keys": keys }))
    }

    /// A SPIFFE trust bundle of these keys as JWT-SVID authorities: each public JWK with
    /// `use` `jwt-svid` (and its `kid`, without `alg`, as SPIRE publishes them), and the
    /// bundle's own `spiffe_sequence` and `spiffe_refresh_hint`.
    pub fn spiffe_bundle(&mut self, specs: &[String], base: &Path) -> Result<Value> {
        let keys = specs
            .iter()
            .map(|s| {
                let mut jwk = self.get(s, base)?.public_jwk();
                if let Some(members) = jwk.as_object_mut() {
                    members.remove("alg");
                    members.insert("use".into(), json!("jwt-svid"));
                }
                Ok(jwk)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(json!({"keys": keys, "spiffe_sequence": 1, "spiffe_refresh_hint": 300}))
    }
}

fn is_file_spec(spec: &str) -> bool {
    spec.ends_with(".pem") || spec.contains('/')
}

fn generate(spec: &str) -> Result<NamedKey> {
    let (kind, name) = spec.split_once(':').unwrap_or(("rsa2048", spec));
    if name.is_empty() {
        bail!("key spec {spec:?}: empty name");
    }
    let mut rng =
        ChaCha20Rng::from_seed(Sha256::digest(format!("harness-key:{kind}:{name}")).into());
    let material = match kind {
        "rsa1024" | "rsa2048" | "rsa3072" | "rsa4096" => {
            let bits = kind[3..].parse().unwrap_or(2048);
            Material::Rsa(Box::new(
                rsa::RsaPrivateKey::new(&mut rng, bits).context("RSA key generation")?,
            ))
        }
        "ps256" => Material::Rsa(Box::new(
            rsa::RsaPrivateKey::new(&mut rng, 2048).context("RSA key generation")?,
        )),
        "ec256" => Material::P256(p256::ecdsa::SigningKey::random(&mut rng)),
        "ec384" => Material::P384(p384::ecdsa::SigningKey::random(&mut rng)),
        "ec521" => Material::P521(p521::ecdsa::SigningKey::random(&mut rng)),
        "secp256k1" => Material::Secp256k1(k256::ecdsa::SigningKey::random(&mut rng)),
        "ed25519" => {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            Material::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
        }
        "hs256" => {
            let mut secret = vec![0u8; 32];
            rng.fill_bytes(&mut secret);
            Material::Hmac(secret)
        }
        other => bail!(
            "key spec {spec:?}: unknown kind {other:?} (use NAME, rsaBITS:NAME, ps256:NAME, ec256:NAME, hs256:NAME, ec384:NAME, ec521:NAME, secp256k1:NAME, ed25519:NAME or a .pem file)"
        ),
    };
    Ok(NamedKey {
        kid: name.to_string(),
        material,
        pss: kind == "ps256",
    })
}

/// `p521`'s signing key has no `From<SecretKey>`: through the scalar's bytes.
fn p521_signing_key(key: &p521::SecretKey) -> Result<p521::ecdsa::SigningKey> {
    p521::ecdsa::SigningKey::from_bytes(&key.to_bytes()).map_err(|e| anyhow!("P-521 key: {e}"))
}

fn load_file(path: &Path) -> Result<NamedKey> {
    use p256::pkcs8::DecodePrivateKey;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let kid = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let material = if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(&pem) {
        Material::Rsa(Box::new(k))
    } else if let Ok(k) = rsa::RsaPrivateKey::from_pkcs1_pem(&pem) {
        Material::Rsa(Box::new(k))
    } else if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem) {
        Material::P256(k)
    } else if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_pem(&pem) {
        Material::P384(k)
    } else if let Ok(k) = p521::SecretKey::from_pkcs8_pem(&pem) {
        Material::P521(p521_signing_key(&k)?)
    } else if let Ok(k) = k256::ecdsa::SigningKey::from_pkcs8_pem(&pem) {
        Material::Secp256k1(k)
    } else if let Ok(k) = p256::SecretKey::from_sec1_pem(&pem) {
        Material::P256(k.into())
    } else if let Ok(k) = p384::SecretKey::from_sec1_pem(&pem) {
        Material::P384(k.into())
    } else if let Ok(k) = p521::SecretKey::from_sec1_pem(&pem) {
        Material::P521(p521_signing_key(&k)?)
    } else if let Ok(k) = k256::SecretKey::from_sec1_pem(&pem) {
        Material::Secp256k1(k.into())
    } else if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem) {
        Material::Ed25519(k)
    } else {
        return Err(anyhow!(
            "{}: not a PKCS#8 (RSA, P-256, P-384, P-521, secp256k1, Ed25519), PKCS#1 RSA or SEC1 EC private key",
            path.display()
        ));
    };
    Ok(NamedKey {
        kid,
        material,
        pss: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_key_and_kinds_differ() {
        let base = Path::new(".");
        let mut ring = KeyRing::default();
        let a = ring.get("ec256:a", base).unwrap().public_jwk();
        let mut other = KeyRing::default();
        assert_eq!(a, other.get("ec256:a", base).unwrap().public_jwk());
        assert_eq!(a["kid"], "a");
        assert_eq!(a["crv"], "P-256");
        assert_ne!(a, other.get("ec256:b", base).unwrap().public_jwk());
        assert_eq!(
            other.get("ed25519:e", base).unwrap().public_jwk()["kty"],
            "OKP"
        );
        assert!(other.get("dsa:x", base).is_err());
    }

    #[test]
    fn p521_and_secp256k1_keys_sign_their_algorithm() {
        let base = Path::new(".");
        let mut ring = KeyRing::default();
        for (spec, crv, alg, size, sig_len) in [
            ("ec521:a", "P-521", "ES512", 66, 132),
            ("secp256k1:a", "secp256k1", "ES256K", 32, 64),
        ] {
            let key = ring.get(spec, base).unwrap();
            let jwk = key.public_jwk();
            assert_eq!(
                (jwk["crv"].as_str(), jwk["alg"].as_str()),
                (Some(crv), Some(alg))
            );
            assert_eq!(jwk["kid"], "a");
            let x = B64.decode(jwk["x"].as_str().unwrap()).unwrap();
            assert_eq!(x.len(), size, "{spec}");
            assert_eq!(key.default_alg(), alg);
            assert_eq!(key.sign(alg, b"input").unwrap().len(), sig_len);
            assert!(key.sign("ES256", b"input").is_err(), "{spec}");
            // The same spec, the same key.
            assert_eq!(
                KeyRing::default().get(spec, base).unwrap().public_jwk(),
                jwk
            );
        }
        assert_ne!(
            ring.get("ec521:a", base).unwrap().public_jwk(),
            ring.get("ec521:b", base).unwrap().public_jwk()
        );
    }

    #[test]
    fn pem_files_load_with_the_file_stem_as_kid() {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let dir = std::env::temp_dir().join(format!("harness-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = p256::ecdsa::SigningKey::random(&mut ChaCha20Rng::from_seed([7; 32]));
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        std::fs::write(dir.join("signer.pem"), pem.as_bytes()).unwrap();
        std::fs::write(dir.join("junk.pem"), "not a key").unwrap();
        let mut ring = KeyRing::default();
        let loaded = ring.get("signer.pem", &dir).unwrap();
        assert_eq!(
            (loaded.kid.as_str(), loaded.default_alg()),
            ("signer", "ES256")
        );
        assert!(ring.get("junk.pem", &dir).is_err());
        assert!(ring.get("missing.pem", &dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac("HS256", b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
