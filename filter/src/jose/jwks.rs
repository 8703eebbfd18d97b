//! Key sets (RFC 7517 JWKS): parsing, the load-time checks that drop unusable or weak keys,
//! and the choice of the key for a token.
//!
//! Every key is checked once, when its set loads, so that requests only ever meet keys that
//! are well-formed, strong enough and meant for signatures.

use crate::jose::alg::{Algorithm, Family};
use crate::jose::base64url;
use crate::jose::ec_point;
use crate::jose::json::{self, Quoted};
use crate::jose::spki;
use serde_json::{Map, Value};
use std::rc::Rc;

/// Most keys accepted in one set unless the provider's `max_keys` says otherwise: real
/// issuers publish a handful (two or three during a rotation).
pub const MAX_KEYS: usize = 64;
/// The highest `max_keys` a provider may configure. Every VM checks every key of a set it
/// adopts, in one callback: measured in the harness's wasm VM, an RSA-2048 key costs at
/// most 5 million instructions, a P-256 key at most 12 million (`ring` checks the point
/// with a key agreement), so 256 of them stay under the 5 billion the harness allows one
/// callback. (A P-384 key costs about 85 million: sets of P-384 keys should stay under 50,
/// whatever the limit.)
pub const MAX_KEYS_BOUND: usize = 256;
/// Longest `kid` kept; longer ones are dropped (no issuer needs them; attackers like them).
pub const MAX_KID_BYTES: usize = 256;
const RSA_MIN_BITS: usize = 2048;
/// Larger moduli make every verification slower and nobody issues them.
const RSA_MAX_BITS: usize = 4096;

#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Key>,
}

#[derive(Debug, Clone)]
pub struct Key {
    pub kid: Option<String>,
    /// The JWK's own `alg`: when present, the key verifies that algorithm only.
    pub alg: Option<Algorithm>,
    /// Shared with the verified tokens it verified (`token_cache`), which compare it.
    pub material: Rc<Material>,
    /// DER SubjectPublicKeyInfo (RSA and EC keys), for the host's `verify_signature`.
    pub spki_der: Option<Vec<u8>>,
}

/// A key's public parameters, decoded and validated once when its set loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// Modulus and exponent, big-endian, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point `04 || x || y`, on P-256.
    P256(Vec<u8>),
    /// Uncompressed SEC1 point `04 || x || y`, on P-384.
    P384(Vec<u8>),
    /// Uncompressed SEC1 point `04 || x || y`, on P-521 (ES512: verified by the host only).
    P521(Vec<u8>),
    /// Uncompressed SEC1 point `04 || x || y`, on secp256k1 (ES256K: verified in wasm only).
    Secp256k1(Vec<u8>),
    /// The 32-byte encoded point, valid.
    Ed25519(Vec<u8>),
    /// A shared HMAC secret: only ever from the configuration, never from the network.
    Oct(Vec<u8>),
}

/// Why no key verifies a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// The token names a `kid` the set does not have: a refetch may help.
    UnknownKid,
    /// No key of the set fits the token's algorithm (and `kid`, if any).
    NoMatch,
    /// Several keys fit and the token does not say which (or a `kid` is duplicated).
    Ambiguous,
}

/// Where a key set comes from decides what it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Inline in the configuration: may hold HMAC secrets.
    Config,
    /// Fetched from the network: symmetric keys are dropped.
    Remote,
}

/// What a key set may hold, beyond where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    /// Most entries: a larger set is refused whole.
    pub max_keys: usize,
    /// Keys a SPIFFE bundle publishes for JWT-SVIDs (`use: "jwt-svid"`, each with a `kid`)
    /// verify tokens too; otherwise a `use` other than `sig` drops the key.
    pub jwt_svid: bool,
}

impl Accept {
    /// Signature keys only (`use` absent or `sig`), at most `max_keys` entries.
    pub fn signing(max_keys: usize) -> Self {
        Accept {
            max_keys,
            jwt_svid: false,
        }
    }
}

/// A key set and the reasons why some of its entries were dropped (for logs).
#[derive(Debug)]
pub struct Loaded {
    pub set: KeySet,
    pub dropped: Vec<String>,
}

impl KeySet {
    /// Parses a JWKS document. Unusable keys are dropped with a reason; a document that is
    /// not a JWKS, mixes symmetric and asymmetric keys, or keeps no usable key is an error.
    /// At most `MAX_KEYS` entries (`parse_limited` for another bound).
    pub fn parse(bytes: &[u8], origin: Origin) -> Result<Loaded, String> {
        Self::parse_limited(bytes, origin, MAX_KEYS)
    }

    /// Parses a JWKS document of at most `max_keys` entries: a larger one is refused whole
    /// (the error gives the count, never a key).
    pub fn parse_limited(bytes: &[u8], origin: Origin, max_keys: usize) -> Result<Loaded, String> {
        Self::parse_accepting(bytes, origin, Accept::signing(max_keys))
    }

    /// Parses a JWKS document with what `accept` says.
    pub fn parse_accepting(bytes: &[u8], origin: Origin, accept: Accept) -> Result<Loaded, String> {
        let doc = json::parse_object(bytes)?;
        Self::from_object_accepting(&doc, origin, accept)
    }

    /// At most `MAX_KEYS` entries.
    pub fn from_object(doc: &Map<String, Value>, origin: Origin) -> Result<Loaded, String> {
        Self::from_object_limited(doc, origin, MAX_KEYS)
    }

    pub fn from_object_limited(
        doc: &Map<String, Value>,
        origin: Origin,
        max_keys: usize,
    ) -> Result<Loaded, String> {
        Self::from_object_accepting(doc, origin, Accept::signing(max_keys))
    }

    pub fn from_object_accepting(
        doc: &Map<String, Value>,
        origin: Origin,
        Accept { max_keys, jwt_svid }: Accept,
    ) -> Result<Loaded, String> {
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err("'keys' must be an array".into());
        };
        if entries.len() > max_keys {
            return Err(format!(
                "key set has {} keys, over the limit of {max_keys}",
                entries.len()
            ));
        }
        // A `kid` that names two entries (even if one of them is unusable) names no key:
        // which one the issuer meant is anyone's guess. The kids are read once, so that a
        // large set costs string comparisons, not a member lookup per pair.
        fn kid_of(entry: &Value) -> Option<&str> {
            entry.get("kid").and_then(Value::as_str)
        }
        let kids: Vec<&str> = entries.iter().filter_map(kid_of).collect();
        let duplicated = |kid: &str| kids.iter().filter(|k| **k == kid).nth(1).is_some();
        let (mut keys, mut dropped) = (Vec::new(), Vec::new());
        for (i, entry) in entries.iter().enumerate() {
            match parse_key(entry, origin, jwt_svid) {
                Ok(_) if kid_of(entry).is_some_and(duplicated) => {
                    dropped.push(format!("key {i}: 'kid' is shared with another key"));
                }
                Ok(key) => keys.push(key),
                Err(why) => dropped.push(format!("key {i}: {why}")),
            }
        }
        let symmetric = keys
            .iter()
            .filter(|k| matches!(*k.material, Material::Oct(_)))
            .count();
        if symmetric != 0 && symmetric != keys.len() {
            return Err("mixes symmetric and asymmetric keys".into());
        }
        if keys.is_empty() {
            let why = dropped.join("; ");
            return Err(format!("no usable key ({why})"));
        }
        Ok(Loaded {
            set: KeySet { keys },
            dropped,
        })
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Chooses the key for a token with header `kid` and algorithm `alg`. With a `kid`,
    /// exactly one key of that id must fit `alg`; without one, exactly one key of the whole
    /// set must fit.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, KeyError> {
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid);
        let mut fitting = candidates.clone().filter(|k| k.fits(alg));
        match (fitting.next(), fitting.next()) {
            (Some(key), None) => Ok(key),
            (Some(_), Some(_)) => Err(KeyError::Ambiguous),
            (None, _) if kid.is_some() && candidates.next().is_none() => Err(KeyError::UnknownKid),
            (None, _) => Err(KeyError::NoMatch),
        }
    }
}

impl Key {
    /// Whether this key may verify `alg`: right key type and curve, and the JWK's own
    /// `alg` (when given) is exactly `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|own| own != alg) {
            return false;
        }
        match (&*self.material, alg) {
            (Material::Rsa { .. }, a) => a.family() == Family::Rsa,
            // Each curve its own algorithm (RFC 7518 3.4, RFC 8812 3.2): never ES256K on a
            // P-256 key, nor ES256 on a secp256k1 key, though both hash with SHA-256.
            (Material::P256(_), a) => a == Algorithm::ES256,
            (Material::P384(_), a) => a == Algorithm::ES384,
            (Material::P521(_), a) => a == Algorithm::ES512,
            (Material::Secp256k1(_), a) => a == Algorithm::ES256K,
            (Material::Ed25519(_), a) => a == Algorithm::EdDSA,
            (Material::Oct(secret), a) => hmac_min_bytes(a).is_some_and(|m| secret.len() >= m),
        }
    }
}

/// RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
fn hmac_min_bytes(alg: Algorithm) -> Option<usize> {
    match alg {
        Algorithm::HS256 => Some(32),
        Algorithm::HS384 => Some(48),
        Algorithm::HS512 => Some(64),
        _ => None,
    }
}

fn parse_key(entry: &Value, origin: Origin, jwt_svid: bool) -> Result<Key, String> {
    let jwk = entry.as_object().ok_or("not a JSON object")?;
    let kid = optional_str(jwk, "kid")?;
    if kid.is_some_and(|k| k.len() > MAX_KID_BYTES) {
        return Err(format!("'kid' longer than {MAX_KID_BYTES} bytes"));
    }
    match optional_str(jwk, "use")? {
        None | Some("sig") => {}
        // The SPIFFE bundle format: a JWT-SVID authority, which must carry its `kid`.
        Some("jwt-svid") if jwt_svid && kid.is_none() => {
            return Err("'use' is 'jwt-svid' without a 'kid'".into());
        }
        Some("jwt-svid") if jwt_svid => {}
        Some("jwt-svid") => {
            return Err("'use' is 'jwt-svid', not 'sig' (jwt_svid is off)".into());
        }
        Some(usage) => return Err(format!("'use' is '{usage}', not 'sig'")),
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops.as_array().ok_or("'key_ops' must be an array")?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err("'key_ops' does not include 'verify'".into());
        }
    }
    let alg = match optional_str(jwk, "alg")? {
        None => None,
        // "ES521" is a common misspelling of ES512 in published keys (ORY Hydra's, PyJWT's
        // alias, Wycheproof's RFC 7520 vectors); on a key only, never in a token's header
        // or the configuration. It fits P-521 keys only, like ES512.
        Some("ES521") => Some(Algorithm::ES512),
        Some(name) => Some(
            Algorithm::parse(name)
                .ok_or_else(|| format!("'alg' '{name}' is not a supported signature algorithm"))?,
        ),
    };
    let kty = optional_str(jwk, "kty")?.ok_or("'kty' missing")?;
    let (material, spki_der) = match kty {
        "RSA" => rsa_key(jwk)?,
        "EC" => ec_key(jwk)?,
        "OKP" => okp_key(jwk)?,
        "oct" if origin == Origin::Config => oct_key(jwk)?,
        "oct" => return Err("symmetric keys are never taken from the network".into()),
        other => return Err(format!("unsupported 'kty' '{other}'")),
    };
    let key = Key {
        kid: kid.map(str::to_string),
        alg,
        material: Rc::new(material),
        spki_der,
    };
    // A key whose own `alg` it cannot verify (ES384 on a P-256 key, HS512 on a 32-byte
    // secret) is useless at best and a confusion at worst.
    if let Some(own) = alg
        && !key.fits(own)
    {
        return Err(format!("'alg' {own} does not fit the key"));
    }
    Ok(key)
}

/// Members of a JWK that only a private or symmetric key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The public key a DPoP proof carries in its `jwk` header, and its RFC 7638 thumbprint
/// (SHA-256 of the required members in order, no whitespace). Private members are
/// refused: a client that sends its private key has lost it.
pub fn proof_key(jwk: &Value) -> Result<(Key, [u8; 32]), &'static str> {
    let map = jwk.as_object().ok_or("'jwk' header is not a JSON object")?;
    if PRIVATE_MEMBERS.iter().any(|m| map.contains_key(*m)) {
        return Err("'jwk' header holds a private key");
    }
    let key = match optional_str(map, "kty") {
        Ok(Some("RSA" | "EC" | "OKP")) => parse_key(jwk, Origin::Remote, false),
        _ => return Err("'jwk' header is not an asymmetric public key"),
    }
    .map_err(|_| "'jwk' header is not a usable public key")?;
    // The members were read as strings of canonical base64url (or a known curve name)
    // above, so none needs escaping.
    let member = |name| optional_str(map, name).ok().flatten().unwrap_or_default();
    let members = match &*key.material {
        Material::Rsa { .. } => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            member("e"),
            member("n")
        ),
        Material::P256(_) | Material::P384(_) | Material::P521(_) | Material::Secp256k1(_) => {
            format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                member("crv"),
                member("x"),
                member("y")
            )
        }
        Material::Ed25519(_) => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, member("x")),
        Material::Oct(_) => return Err("'jwk' header is not an asymmetric public key"),
    };
    Ok((key, sha256(members.as_bytes())))
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().try_into().unwrap_or([0; 32])
}

fn optional_str<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("'{name}' must be a string")),
    }
}

fn bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = optional_str(jwk, name)?.ok_or_else(|| format!("'{name}' missing"))?;
    base64url::decode(text).ok_or_else(|| format!("'{name}' is not canonical base64url"))
}

/// A key and its DER public key, if the host can use one.
type Parts = (Material, Option<Vec<u8>>);

fn rsa_key(jwk: &Map<String, Value>) -> Result<Parts, String> {
    let n = strip_leading_zeros(bytes(jwk, "n")?);
    let e = strip_leading_zeros(bytes(jwk, "e")?);
    let bits = bit_length(&n);
    if bits < RSA_MIN_BITS {
        return Err(format!(
            "RSA modulus of {bits} bits is under {RSA_MIN_BITS}"
        ));
    }
    if bits > RSA_MAX_BITS {
        return Err(format!("RSA modulus of {bits} bits is over {RSA_MAX_BITS}"));
    }
    if n.last().is_some_and(|b| b % 2 == 0) {
        return Err("RSA modulus is even".into());
    }
    // Verifiers take exponents up to 2^33 - 1; real ones are 65537.
    if e.len() > 4 || e == [1] || e.last().is_none_or(|b| b % 2 == 0) {
        return Err("RSA public exponent must be odd, above 1 and below 2^32".into());
    }
    if roca_fingerprint(&n) {
        return Err("RSA key has the ROCA fingerprint (CVE-2017-15361)".into());
    }
    let der = spki::rsa(&n, &e);
    Ok((Material::Rsa { n, e }, Some(der)))
}

/// The EC curves keys may be on (`crv`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    P521,
    Secp256k1,
}

fn ec_key(jwk: &Map<String, Value>) -> Result<Parts, String> {
    let (curve, size) = match optional_str(jwk, "crv")? {
        Some("P-256") => (Curve::P256, 32),
        Some("P-384") => (Curve::P384, 48),
        Some("P-521") => (Curve::P521, 66),
        Some("secp256k1") => (Curve::Secp256k1, 32),
        Some(other) => return Err(format!("unsupported EC curve {}", Quoted(other))),
        None => return Err("'crv' missing".into()),
    };
    let (x, y) = (bytes(jwk, "x")?, bytes(jwk, "y")?);
    // Coordinates are exactly the field's size, leading zeros kept (RFC 7518 6.2.1.2,
    // RFC 8812 3.1): a 65-byte P-521 `x` is refused, not padded.
    if x.len() != size || y.len() != size {
        return Err("EC coordinates have the wrong length".into());
    }
    let point = [&[0x04], x.as_slice(), y.as_slice()].concat();
    let valid = match curve {
        Curve::P256 | Curve::P384 => on_curve(size, &point),
        Curve::P521 => ec_point::p521_on_curve(&point),
        Curve::Secp256k1 => ec_point::secp256k1_valid(&point),
    };
    if !valid {
        return Err("EC point is not on the curve".into());
    }
    Ok(match curve {
        Curve::P256 => {
            let der = spki::ec(spki::PRIME256V1, &point);
            (Material::P256(point), Some(der))
        }
        Curve::P384 => {
            let der = spki::ec(spki::SECP384R1, &point);
            (Material::P384(point), Some(der))
        }
        Curve::P521 => {
            let der = spki::ec(spki::SECP521R1, &point);
            (Material::P521(point), Some(der))
        }
        // The host (BoringSSL in Envoy) has no secp256k1: no DER form, never asked.
        Curve::Secp256k1 => (Material::Secp256k1(point), None),
    })
}

/// Whether `point` (uncompressed SEC1) is a valid public point of P-256 (`size` 32) or
/// P-384: `ring` validates a peer's point before any key agreement, so one agreement with
/// a throw-away key answers (a point-validation crate would add tens of KiB to the module).
fn on_curve(size: usize, point: &[u8]) -> bool {
    use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
    let alg = if size == 32 {
        &agreement::ECDH_P256
    } else {
        &agreement::ECDH_P384
    };
    EphemeralPrivateKey::generate(alg, &ring::rand::SystemRandom::new())
        .and_then(|mine| {
            agreement::agree_ephemeral(mine, &UnparsedPublicKey::new(alg, point), |_| ())
        })
        .is_ok()
}

fn okp_key(jwk: &Map<String, Value>) -> Result<Parts, String> {
    if optional_str(jwk, "crv")? != Some("Ed25519") {
        return Err("only the Ed25519 OKP curve is supported".into());
    }
    let x = bytes(jwk, "x")?;
    let point: [u8; 32] = x
        .as_slice()
        .try_into()
        .map_err(|_| "Ed25519 key must be 32 bytes")?;
    if !ec_point::ed25519_valid(&point) {
        return Err("Ed25519 key is not a valid point".into());
    }
    Ok((Material::Ed25519(x), None))
}

fn oct_key(jwk: &Map<String, Value>) -> Result<Parts, String> {
    let secret = bytes(jwk, "k")?;
    if secret.len() < 32 {
        return Err("HMAC secret shorter than 32 bytes".into());
    }
    Ok((Material::Oct(secret), None))
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|&&b| b == 0).count();
    v.drain(..zeros);
    v
}

fn bit_length(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(&top) => be.len() * 8 - top.leading_zeros() as usize,
    }
}

/// The ROCA test (Nemec et al., CCS 2017): moduli made by the vulnerable Infineon
/// library are, modulo each of these small primes, a power of 65537. A random modulus
/// passes all of them with probability far below 2^-100.
fn roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0u32, |r, &b| (r * 256 + u32::from(b)) % p);
        let generator = 65537 % p;
        let mut power = 1;
        (0..p).any(|_| {
            let hit = power == residue;
            power = power * generator % p;
            hit
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n2048() -> String {
        crate::testkit::public_jwk("rsa-a", "a")["n"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn load(keys: Value, origin: Origin) -> Result<Loaded, String> {
        KeySet::from_object(json!({ "keys": keys }).as_object().unwrap(), origin)
    }

    fn rsa(extra: Value) -> Value {
        let mut k = json!({"kty": "RSA", "n": n2048(), "e": "AQAB"});
        k.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        k
    }

    /// The public JWK of a fixed P-384 key (made by the `p384` crate, a dev-dependency).
    fn p384_jwk() -> Value {
        let secret = p384::SecretKey::from_slice(&[7u8; 48]).unwrap();
        let point = secret.public_key().to_sec1_bytes();
        json!({"kty": "EC", "crv": "P-384", "x": base64url::encode(&point[1..49]),
               "y": base64url::encode(&point[49..])})
    }

    #[test]
    fn p384_points_are_validated_too() {
        let jwk = p384_jwk();
        assert!(load(json!([jwk.clone()]), Origin::Remote).is_ok());
        // The same x with another y: off the curve.
        let mut y = base64url::decode(jwk["y"].as_str().unwrap()).unwrap();
        if let Some(last) = y.last_mut() {
            *last ^= 1;
        }
        let mut off = jwk;
        off["y"] = json!(base64url::encode(&y));
        let err = load(json!([off]), Origin::Remote).unwrap_err();
        assert!(err.contains("EC point is not on the curve"), "{err}");
    }

    #[test]
    fn keeps_a_plain_rsa_key() {
        let loaded = load(json!([rsa(json!({"kid": "a"}))]), Origin::Remote).unwrap();
        assert!(loaded.dropped.is_empty());
        assert!(loaded.set.select(Some("a"), Algorithm::RS256).is_ok());
        assert!(loaded.set.select(None, Algorithm::PS512).is_ok());
    }

    #[test]
    fn drops_keys_not_meant_for_signatures() {
        for extra in [
            json!({"use": "enc"}),
            json!({"key_ops": ["encrypt"]}),
            json!({"key_ops": "verify"}),
            json!({"alg": "RSA-OAEP"}),
            json!({"alg": "ES256"}),
            json!({"kid": 7}),
            json!({"kid": "k".repeat(MAX_KID_BYTES + 1)}),
        ] {
            let loaded = load(
                json!([rsa(extra.clone()), rsa(json!({"kid": "ok"}))]),
                Origin::Remote,
            );
            assert_eq!(loaded.unwrap().dropped.len(), 1, "{extra}");
        }
    }

    #[test]
    fn drops_weak_rsa_keys() {
        let short = base64url::encode(&[0xc5; 128]); // 1024 bits
        let n2048 = n2048();
        let even = {
            let mut n = base64url::decode(&n2048).unwrap();
            *n.last_mut().unwrap() &= 0xfe;
            base64url::encode(&n)
        };
        for (n, e) in [
            (short.as_str(), "AQAB"),
            (n2048.as_str(), "AQ"),
            (n2048.as_str(), "AQAA"),
            (n2048.as_str(), "AQAAAAE"),
            (even.as_str(), "AQAB"),
            (n2048.as_str(), "AQAB="),
        ] {
            let err = load(json!([{"kty": "RSA", "n": n, "e": e}]), Origin::Remote).unwrap_err();
            assert!(err.starts_with("no usable key"), "{err}");
        }
    }

    #[test]
    fn symmetric_keys_come_only_from_the_configuration() {
        let secret = json!({"kty": "oct", "k": base64url::encode(&[7; 32])});
        assert!(load(json!([secret.clone()]), Origin::Remote).is_err());
        assert!(load(json!([secret.clone()]), Origin::Config).is_ok());
        let mixed = load(json!([secret, rsa(json!({}))]), Origin::Config).unwrap_err();
        assert!(mixed.contains("mixes"), "{mixed}");
    }

    #[test]
    fn hmac_secret_length_follows_the_algorithm() {
        let set = load(
            json!([{"kty": "oct", "k": base64url::encode(&[7; 48])}]),
            Origin::Config,
        )
        .unwrap()
        .set;
        assert!(set.select(None, Algorithm::HS256).is_ok());
        assert!(set.select(None, Algorithm::HS384).is_ok());
        assert_eq!(
            set.select(None, Algorithm::HS512).unwrap_err(),
            KeyError::NoMatch
        );
        assert!(
            load(
                json!([{"kty": "oct", "k": base64url::encode(&[7; 31])}]),
                Origin::Config
            )
            .is_err()
        );
        let own = json!([{"kty": "oct", "alg": "HS512", "k": base64url::encode(&[7; 48])}]);
        assert!(load(own, Origin::Config).is_err());
    }

    #[test]
    fn selection_by_kid_alg_and_uniqueness() {
        let keys = json!([
            rsa(json!({"kid": "a", "alg": "RS256"})),
            rsa(json!({"kid": "b"})),
            rsa(json!({"kid": "b", "use": "enc"})),
            rsa(json!({}))
        ]);
        let loaded = load(keys, Origin::Remote).unwrap();
        assert_eq!(
            loaded.dropped.len(),
            2,
            "both entries named 'b' go: {:?}",
            loaded.dropped
        );
        let set = loaded.set;
        let err = |kid, alg| set.select(kid, alg).unwrap_err();
        assert!(set.select(Some("a"), Algorithm::RS256).is_ok());
        assert_eq!(err(Some("a"), Algorithm::RS384), KeyError::NoMatch);
        assert_eq!(err(Some("a"), Algorithm::ES256), KeyError::NoMatch);
        assert_eq!(err(Some("b"), Algorithm::RS256), KeyError::UnknownKid);
        assert_eq!(err(Some("zz"), Algorithm::RS256), KeyError::UnknownKid);
        // Without a kid, exactly one key must fit: two do for RS256, one for RS384.
        assert_eq!(err(None, Algorithm::RS256), KeyError::Ambiguous);
        assert!(set.select(None, Algorithm::RS384).is_ok());
    }

    /// A test key's public JWK (`p521`, `secp256k1`: `crate::testkit`).
    fn jwk(name: &str) -> Value {
        crate::testkit::public_jwk(name, "k")
    }

    fn with(mut jwk: Value, extra: Value) -> Value {
        jwk.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        jwk
    }

    fn flip_last(b64: &Value) -> Value {
        let mut bytes = base64url::decode(b64.as_str().unwrap()).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        json!(base64url::encode(&bytes))
    }

    #[test]
    fn p521_and_secp256k1_keys_fit_their_own_algorithm_only() {
        let p521 = load(json!([jwk("p521")]), Origin::Remote).unwrap().set;
        let key = p521.select(None, Algorithm::ES512).unwrap();
        assert!(matches!(&*key.material, Material::P521(p) if p.len() == 133));
        // The host gets the key as DER with the secp521r1 OID.
        let der = key.spki_der.as_deref().unwrap();
        assert!(der.windows(5).any(|w| w == spki::SECP521R1));
        let k256 = load(json!([jwk("secp256k1")]), Origin::Remote).unwrap().set;
        let key = k256.select(None, Algorithm::ES256K).unwrap();
        assert!(matches!(&*key.material, Material::Secp256k1(p) if p.len() == 65));
        // The host has no secp256k1: it is never given the key.
        assert_eq!(key.spki_der, None);
        let p256 = load(json!([jwk("ec256")]), Origin::Remote).unwrap().set;
        for alg in Algorithm::ALL {
            let fits = |set: &KeySet| set.select(None, alg).is_ok();
            assert_eq!(fits(&p521), alg == Algorithm::ES512, "{alg}");
            assert_eq!(fits(&k256), alg == Algorithm::ES256K, "{alg}");
            assert_eq!(fits(&p256), alg == Algorithm::ES256, "{alg}");
        }
        // A key's own alg must fit its curve: ES256K on P-256, ES256 on secp256k1, ES512 on
        // P-256, ES384 on P-521 are all dropped.
        for (name, alg) in [
            ("ec256", "ES256K"),
            ("secp256k1", "ES256"),
            ("ec256", "ES512"),
            ("p521", "ES384"),
        ] {
            let err = load(
                json!([with(jwk(name), json!({"alg": alg}))]),
                Origin::Remote,
            )
            .unwrap_err();
            assert!(
                err.contains(&format!("'alg' {alg} does not fit the key")),
                "{err}"
            );
        }
    }

    #[test]
    fn es521_on_a_key_reads_as_es512() {
        let set = load(
            json!([with(jwk("p521"), json!({"alg": "ES521"}))]),
            Origin::Remote,
        )
        .unwrap()
        .set;
        assert_eq!(set.keys()[0].alg, Some(Algorithm::ES512));
        // Not on another curve (Wycheproof's JWK tcId 19 is such a key).
        let err = load(
            json!([with(jwk("ec256"), json!({"alg": "ES521"}))]),
            Origin::Remote,
        )
        .unwrap_err();
        assert!(err.contains("'alg' ES512 does not fit the key"), "{err}");
        // Other misspellings stay unknown.
        for alg in ["es512", "ES256k", "ES522"] {
            let err = load(
                json!([with(jwk("p521"), json!({"alg": alg}))]),
                Origin::Remote,
            )
            .unwrap_err();
            assert!(
                err.contains("is not a supported signature algorithm"),
                "{err}"
            );
        }
    }

    #[test]
    fn p521_and_secp256k1_points_are_validated() {
        for name in ["p521", "secp256k1"] {
            let good = jwk(name);
            assert!(load(json!([good.clone()]), Origin::Remote).is_ok());
            for member in ["x", "y"] {
                let mut off = good.clone();
                off[member] = flip_last(&good[member]);
                let err = load(json!([off]), Origin::Remote).unwrap_err();
                assert!(err.contains("EC point is not on the curve"), "{name} {err}");
            }
        }
        // The coordinates must have the curve's size, leading zeros kept.
        let p521 = jwk("p521");
        let short = base64url::decode(p521["x"].as_str().unwrap()).unwrap();
        for x in [&short[1..], &[&[0], &short[..]].concat()[..]] {
            let bad = with(p521.clone(), json!({"x": base64url::encode(x)}));
            let err = load(json!([bad]), Origin::Remote).unwrap_err();
            assert!(
                err.contains("EC coordinates have the wrong length"),
                "{err}"
            );
        }
        // A point of one curve named as another: refused (both 32-byte curves).
        let p256_as_k256 = with(jwk("ec256"), json!({"crv": "secp256k1"}));
        let err = load(json!([p256_as_k256]), Origin::Remote).unwrap_err();
        assert!(err.contains("EC point is not on the curve"), "{err}");
        let k256_as_p256 = with(jwk("secp256k1"), json!({"crv": "P-256"}));
        let err = load(json!([k256_as_p256]), Origin::Remote).unwrap_err();
        assert!(err.contains("EC point is not on the curve"), "{err}");
        // Curve names are case-sensitive.
        for crv in ["p-521", "SECP256K1", "P-521 ", "P-512"] {
            let bad = with(jwk("p521"), json!({"crv": crv}));
            let err = load(json!([bad]), Origin::Remote).unwrap_err();
            assert!(
                err.contains(&format!("unsupported EC curve \"{crv}\"")),
                "{err}"
            );
        }
        // Named as the key server wrote it, escaped; or missing.
        let bad = with(jwk("p521"), json!({"crv": "P-\"256\"\u{2011}"}));
        let err = load(json!([bad]), Origin::Remote).unwrap_err();
        assert!(
            err.contains(r#"unsupported EC curve "P-\"256\"\u{2011}""#),
            "{err}"
        );
        let mut bad = jwk("p521");
        bad.as_object_mut().unwrap().remove("crv");
        let err = load(json!([bad]), Origin::Remote).unwrap_err();
        assert!(err.contains("'crv' missing"), "{err}");
    }

    #[test]
    fn dpop_proof_keys_on_the_new_curves_have_rfc7638_thumbprints() {
        for name in ["p521", "secp256k1"] {
            let public = jwk(name);
            let (key, jkt) = proof_key(&public).unwrap();
            assert!(key.fits(if name == "p521" {
                Algorithm::ES512
            } else {
                Algorithm::ES256K
            }));
            let members = format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                public["crv"].as_str().unwrap(),
                public["x"].as_str().unwrap(),
                public["y"].as_str().unwrap()
            );
            assert_eq!(jkt, sha256(members.as_bytes()));
        }
    }

    #[test]
    fn ec_points_are_validated() {
        // The P-256 generator point.
        let x = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY";
        let y = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";
        let good = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
        let set = load(json!([good]), Origin::Remote).unwrap().set;
        assert!(set.select(None, Algorithm::ES256).is_ok());
        assert_eq!(
            set.select(None, Algorithm::ES384).unwrap_err(),
            KeyError::NoMatch
        );
        let off_curve = json!({"kty": "EC", "crv": "P-256", "x": x, "y": x});
        assert!(load(json!([off_curve]), Origin::Remote).is_err());
        let wrong_curve = json!({"kty": "EC", "crv": "P-384", "x": x, "y": y});
        assert!(load(json!([wrong_curve]), Origin::Remote).is_err());
    }

    #[test]
    fn rejects_documents_that_are_not_key_sets() {
        for doc in [
            &b"[]"[..],
            b"{}",
            b"{\"keys\":{}}",
            b"{\"keys\":[]}",
            b"{\"keys\":[1]}",
        ] {
            assert!(KeySet::parse(doc, Origin::Remote).is_err());
        }
        let many = json!({"keys": vec![rsa(json!({})); MAX_KEYS + 1]});
        assert_eq!(
            KeySet::parse(many.to_string().as_bytes(), Origin::Remote).err(),
            Some("key set has 65 keys, over the limit of 64".into())
        );
    }

    #[test]
    fn the_key_limit_is_the_callers_and_refuses_the_whole_set() {
        let keys: Vec<Value> = (0..5)
            .map(|i| rsa(json!({ "kid": format!("k{i}") })))
            .collect();
        let doc = json!({ "keys": keys }).to_string();
        let at = |max| KeySet::parse_limited(doc.as_bytes(), Origin::Remote, max);
        assert_eq!(at(5).map(|l| l.set.keys().len()).ok(), Some(5));
        assert_eq!(
            at(4).err(),
            Some("key set has 5 keys, over the limit of 4".into())
        );
        // Above the default, within the bound.
        let big: Vec<Value> = (0..MAX_KEYS + 1)
            .map(|i| rsa(json!({ "kid": format!("k{i}") })))
            .collect();
        let big = json!({ "keys": big }).to_string();
        let loaded = KeySet::parse_limited(big.as_bytes(), Origin::Remote, MAX_KEYS_BOUND);
        assert_eq!(loaded.map(|l| l.set.keys().len()).ok(), Some(MAX_KEYS + 1));
    }

    #[test]
    fn a_duplicated_kid_drops_every_key_that_carries_it() {
        let doc = json!({"keys": [
            rsa(json!({"kid": "b"})), rsa(json!({"kid": "a"})),
            rsa(json!({"kid": "b"})), rsa(json!({"kid": "c"})), rsa(json!({}))]});
        let loaded = KeySet::parse(doc.to_string().as_bytes(), Origin::Remote).unwrap();
        let kids: Vec<_> = loaded.set.keys().iter().map(|k| k.kid.clone()).collect();
        assert_eq!(kids, [Some("a".into()), Some("c".into()), None]);
        assert_eq!(
            loaded.dropped,
            [
                "key 0: 'kid' is shared with another key",
                "key 2: 'kid' is shared with another key"
            ]
        );
    }

    #[test]
    fn jwt_svid_keys_only_where_accepted_and_with_a_kid() {
        let svid = |extra: Value| rsa(with(json!({"use": "jwt-svid"}), extra));
        let doc = json!({"keys": [svid(json!({"kid": "a"})), rsa(json!({"kid": "b"}))]});
        let doc = doc.as_object().unwrap();
        // Off (the default): the jwt-svid key is dropped, the signature key kept.
        let off = KeySet::from_object(doc, Origin::Remote).unwrap();
        assert_eq!(off.set.keys().len(), 1);
        assert_eq!(
            off.dropped,
            ["key 0: 'use' is 'jwt-svid', not 'sig' (jwt_svid is off)"]
        );
        // On: both verify.
        let on = Accept {
            max_keys: MAX_KEYS,
            jwt_svid: true,
        };
        let both = KeySet::from_object_accepting(doc, Origin::Remote, on).unwrap();
        assert!(both.dropped.is_empty(), "{:?}", both.dropped);
        assert!(both.set.select(Some("a"), Algorithm::RS256).is_ok());
        // A SPIFFE bundle's other entries stay dropped, and a jwt-svid key needs its kid.
        let bundle = json!({"spiffe_sequence": 1, "keys": [
            svid(json!({})), rsa(json!({"use": "x509-svid"})), svid(json!({"kid": "k"}))]});
        let loaded =
            KeySet::from_object_accepting(bundle.as_object().unwrap(), Origin::Remote, on).unwrap();
        assert_eq!(loaded.set.keys().len(), 1);
        assert_eq!(
            loaded.dropped,
            [
                "key 0: 'use' is 'jwt-svid' without a 'kid'",
                "key 1: 'use' is 'x509-svid', not 'sig'"
            ]
        );
    }
}
