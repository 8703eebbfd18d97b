//! Envoy's `verify_signature` foreign function, natively: protobuf arguments in, protobuf
//! result out. Like BoringSSL's `EVP_DigestVerify` with the key's default scheme: PKCS#1 v1.5
//! for RSA keys, ECDSA (DER signatures) for P-256/P-384/P-521 keys, high `s` included;
//! nothing else verifies (BoringSSL has no secp256k1: such a key does not import).

use p256::pkcs8::DecodePublicKey;
use sha2::{Sha256, Sha384, Sha512};

/// `VerifySignatureArguments` fields.
#[derive(Default, Debug, PartialEq)]
pub struct Arguments {
    pub hash_function: String,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
    pub text: Vec<u8>,
    pub public_key_pem: String,
}

/// Parses the protobuf arguments; `None` when they do not parse (Envoy answers BAD_ARGUMENT).
pub fn parse_arguments(mut bytes: &[u8]) -> Option<Arguments> {
    let mut args = Arguments::default();
    while !bytes.is_empty() {
        let (tag, rest) = varint(bytes)?;
        bytes = rest;
        match tag & 7 {
            0 => bytes = varint(bytes)?.1,
            1 => bytes = bytes.get(8..)?,
            5 => bytes = bytes.get(4..)?,
            2 => {
                let (len, rest) = varint(bytes)?;
                let len = usize::try_from(len).ok()?;
                let field = rest.get(..len)?.to_vec();
                bytes = &rest[len..];
                match tag >> 3 {
                    1 => args.hash_function = String::from_utf8(field).ok()?,
                    2 => args.public_key = field,
                    3 => args.signature = field,
                    4 => args.text = field,
                    5 => args.public_key_pem = String::from_utf8(field).ok()?,
                    _ => {}
                }
            }
            _ => return None,
        }
    }
    Some(args)
}

fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// Encodes `VerifySignatureResult { bool result = 1; string error = 2; }` (proto3: default
/// values are omitted).
pub fn encode_result(result: bool, error: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if result {
        out.extend([0x08, 0x01]);
    }
    if !error.is_empty() {
        out.extend(length_delimited(2, error.as_bytes()));
    }
    out
}

/// A protobuf length-delimited field: tag (`field << 3 | 2`), varint length, bytes.
fn length_delimited(field: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(field << 3) | 2];
    let mut len = bytes.len();
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        out.push(if len == 0 { b } else { b | 0x80 });
        if len == 0 {
            break;
        }
    }
    out.extend(bytes);
    out
}

enum Key {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

fn p521_key(key: p521::PublicKey) -> Key {
    Key::P521(
        p521::ecdsa::VerifyingKey::from_affine(*key.as_affine())
            .unwrap_or_else(|_| unreachable!("a PublicKey is never the identity")),
    )
}

fn import_key(args: &Arguments) -> Option<Key> {
    if !args.public_key_pem.is_empty() {
        let pem = args.public_key_pem.as_str();
        return rsa::RsaPublicKey::from_public_key_pem(pem)
            .map(Key::Rsa)
            .or_else(|_| p256::ecdsa::VerifyingKey::from_public_key_pem(pem).map(Key::P256))
            .or_else(|_| p384::ecdsa::VerifyingKey::from_public_key_pem(pem).map(Key::P384))
            .or_else(|_| p521::PublicKey::from_public_key_pem(pem).map(p521_key))
            .ok();
    }
    let der = args.public_key.as_slice();
    rsa::RsaPublicKey::from_public_key_der(der)
        .map(Key::Rsa)
        .or_else(|_| p256::ecdsa::VerifyingKey::from_public_key_der(der).map(Key::P256))
        .or_else(|_| p384::ecdsa::VerifyingKey::from_public_key_der(der).map(Key::P384))
        .or_else(|_| p521::PublicKey::from_public_key_der(der).map(p521_key))
        .ok()
}

/// Runs the verification; `(result, error)` as Envoy fills `VerifySignatureResult`, or
/// `None` when the key does not import (Envoy then answers BAD_ARGUMENT).
pub fn verify(args: &Arguments) -> Option<(bool, &'static str)> {
    let key = import_key(args)?;
    let (sig, text) = (args.signature.as_slice(), args.text.as_slice());
    let ok = match (&key, args.hash_function.as_str()) {
        (_, h) if !matches!(h, "sha1" | "sha224" | "sha256" | "sha384" | "sha512") => {
            return Some((false, "Failed to verify digest. Unknown hash function."));
        }
        (Key::Rsa(k), "sha256") => rsa_verify::<Sha256>(k, sig, text),
        (Key::Rsa(k), "sha384") => rsa_verify::<Sha384>(k, sig, text),
        (Key::Rsa(k), "sha512") => rsa_verify::<Sha512>(k, sig, text),
        (Key::P256(k), h) => ecdsa_digest(h, text).is_some_and(|d| {
            p256::ecdsa::Signature::from_der(sig).is_ok_and(|s| {
                rsa::signature::hazmat::PrehashVerifier::verify_prehash(k, &d, &s).is_ok()
            })
        }),
        (Key::P384(k), h) => ecdsa_digest(h, text).is_some_and(|d| {
            p384::ecdsa::Signature::from_der(sig).is_ok_and(|s| {
                rsa::signature::hazmat::PrehashVerifier::verify_prehash(k, &d, &s).is_ok()
            })
        }),
        (Key::P521(k), h) => ecdsa_digest(h, text).is_some_and(|d| {
            p521::ecdsa::Signature::from_der(sig).is_ok_and(|s| {
                rsa::signature::hazmat::PrehashVerifier::verify_prehash(k, &d, &s).is_ok()
            })
        }),
        // sha1/sha224 with RSA: supported by BoringSSL, not needed for JWT; refuse.
        (Key::Rsa(_), _) => false,
    };
    Some(if ok {
        (true, "")
    } else {
        (false, "Failed to verify digest. Error code: 0")
    })
}

/// Verifications kept by [`verify_memoized`], at most (then it starts again).
const MEMO_ENTRIES: usize = 4096;

/// What [`verify`] gives.
type Verified = Option<(bool, &'static str)>;

thread_local! {
    /// Whether [`verify_memoized`] keeps results on this thread (`harness fuzz`'s runners).
    static MEMOIZE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Results by the whole arguments, protobuf as received.
    static MEMO: std::cell::RefCell<std::collections::HashMap<Vec<u8>, Verified>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// From now on, [`verify_memoized`] on this thread keeps its results: the fuzzer's cases send
/// the same tokens again and again, to VMs restored without their verified-token caches, and
/// an RSA verification in the host (`num-bigint-dig`) cost about 5% of a case. A
/// verification is a function of its arguments, so a kept result is the one it would give.
/// Not for `harness run` or `harness bench` (whose time must be the host's real cost).
pub fn memoize_on_this_thread() {
    MEMOIZE.with(|m| m.set(true));
}

/// [`verify`] of the protobuf `bytes`, from the results kept when memoizing; `None` when they
/// do not parse.
pub fn verify_memoized(bytes: &[u8]) -> Verified {
    let verify = || verify(&parse_arguments(bytes)?);
    if !MEMOIZE.with(|m| m.get()) {
        return verify();
    }
    if let Some(kept) = MEMO.with(|m| m.borrow().get(bytes).copied()) {
        return kept;
    }
    let result = verify();
    MEMO.with(|m| {
        let mut memo = m.borrow_mut();
        if memo.len() >= MEMO_ENTRIES {
            memo.clear();
        }
        memo.insert(bytes.to_vec(), result);
    });
    result
}

fn ecdsa_digest(hash: &str, text: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    match hash {
        "sha256" => Some(Sha256::digest(text).to_vec()),
        "sha384" => Some(Sha384::digest(text).to_vec()),
        "sha512" => Some(Sha512::digest(text).to_vec()),
        _ => None,
    }
}

fn rsa_verify<D>(key: &rsa::RsaPublicKey, sig: &[u8], text: &[u8]) -> bool
where
    D: sha2::Digest + rsa::pkcs8::AssociatedOid,
{
    use rsa::signature::Verifier;
    let Ok(sig) = rsa::pkcs1v15::Signature::try_from(sig) else {
        return false;
    };
    rsa::pkcs1v15::VerifyingKey::<D>::new(key.clone())
        .verify(text, &sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyRing, Material};
    use p256::pkcs8::EncodePublicKey;
    use std::path::Path;

    fn der(spec: &str) -> Vec<u8> {
        let key = KeyRing::default().get(spec, Path::new(".")).unwrap();
        match &key.material {
            Material::Rsa(k) => k.to_public_key().to_public_key_der().unwrap().to_vec(),
            Material::P256(k) => k.verifying_key().to_public_key_der().unwrap().to_vec(),
            Material::P521(k) => {
                p521::PublicKey::from_affine(*p521::ecdsa::VerifyingKey::from(k).as_affine())
                    .unwrap()
                    .to_public_key_der()
                    .unwrap()
                    .to_vec()
            }
            Material::Secp256k1(k) => k.verifying_key().to_public_key_der().unwrap().to_vec(),
            _ => unreachable!(),
        }
    }

    fn run(spec: &str, alg: &str, hash: &str, der_sig: bool, text: &[u8]) -> (bool, &'static str) {
        let key = KeyRing::default().get(spec, Path::new(".")).unwrap();
        let mut sig = key.sign(alg, b"signed").unwrap();
        if der_sig {
            sig = match sig.len() {
                132 => p521::ecdsa::Signature::from_slice(&sig)
                    .unwrap()
                    .to_der()
                    .as_bytes()
                    .to_vec(),
                _ => p256::ecdsa::Signature::from_slice(&sig)
                    .unwrap()
                    .to_der()
                    .as_bytes()
                    .to_vec(),
            };
        }
        let bytes = [
            length_delimited(1, hash.as_bytes()),
            length_delimited(2, &der(spec)),
            length_delimited(3, &sig),
            length_delimited(4, text),
        ]
        .concat();
        verify(&parse_arguments(&bytes).unwrap()).unwrap()
    }

    /// Kept results are the ones verifying gives, per whole arguments (the text included).
    #[test]
    fn memoized_verifications_are_the_verifications() {
        let key = KeyRing::default().get("memo", Path::new(".")).unwrap();
        let sig = key.sign("RS256", b"signed").unwrap();
        let args = |text: &[u8]| {
            [
                length_delimited(1, b"sha256"),
                length_delimited(2, &der("memo")),
                length_delimited(3, &sig),
                length_delimited(4, text),
            ]
            .concat()
        };
        let (good, bad) = (args(b"signed"), args(b"signed!"));
        memoize_on_this_thread();
        for _ in 0..2 {
            assert_eq!(verify_memoized(&good), Some((true, "")));
            assert_eq!(
                verify_memoized(&bad),
                Some((false, "Failed to verify digest. Error code: 0"))
            );
            assert_eq!(verify_memoized(b"\xff"), None);
        }
        MEMO.with(|m| assert_eq!(m.borrow().len(), 3));
    }

    #[test]
    fn rsa_pkcs1_and_ecdsa_der_verify_like_envoy() {
        assert_eq!(
            run("sigtest", "RS256", "sha256", false, b"signed"),
            (true, "")
        );
        assert!(!run("sigtest", "RS256", "sha256", false, b"other").0);
        assert!(!run("sigtest", "RS256", "sha384", false, b"signed").0);
        assert!(
            !run("sigtest", "PS256", "sha256", false, b"signed").0,
            "PSS is not selectable"
        );
        assert_eq!(
            run("ec256:sig", "ES256", "sha256", true, b"signed"),
            (true, "")
        );
        assert!(
            !run("ec256:sig", "ES256", "sha256", false, b"signed").0,
            "JOSE r||s is not DER"
        );
        assert!(!run("ec256:sig", "ES256", "md5", true, b"signed").0);
    }

    #[test]
    fn p521_verifies_and_secp256k1_does_not_import() {
        assert_eq!(
            run("ec521:sig", "ES512", "sha512", true, b"signed"),
            (true, "")
        );
        assert!(!run("ec521:sig", "ES512", "sha512", true, b"other").0);
        assert!(
            !run("ec521:sig", "ES512", "sha512", false, b"signed").0,
            "JOSE r||s is not DER"
        );
        // ECDSA takes the digest named, as BoringSSL does: sha256 here is another digest.
        assert!(!run("ec521:sig", "ES512", "sha256", true, b"signed").0);
        // A high s (n - s) verifies, as in BoringSSL.
        let key = KeyRing::default().get("ec521:sig", Path::new(".")).unwrap();
        let low =
            p521::ecdsa::Signature::from_slice(&key.sign("ES512", b"signed").unwrap()).unwrap();
        let (r, s) = low.split_scalars();
        let high = p521::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        let bytes = [
            length_delimited(1, b"sha512"),
            length_delimited(2, &der("ec521:sig")),
            length_delimited(3, high.to_der().as_bytes()),
            length_delimited(4, b"signed"),
        ]
        .concat();
        assert_eq!(verify(&parse_arguments(&bytes).unwrap()), Some((true, "")));
        // secp256k1: BoringSSL cannot import the key (Envoy answers BAD_ARGUMENT).
        let bytes = [
            length_delimited(1, b"sha256"),
            length_delimited(2, &der("secp256k1:sig")),
            length_delimited(3, &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]),
            length_delimited(4, b"signed"),
        ]
        .concat();
        assert_eq!(verify(&parse_arguments(&bytes).unwrap()), None);
    }

    #[test]
    fn protobuf_edges() {
        assert_eq!(encode_result(true, ""), vec![8, 1]);
        assert_eq!(encode_result(false, "ab"), vec![0x12, 2, b'a', b'b']);
        assert!(parse_arguments(&[0x0a, 5, b'a']).is_none());
        let big = "x".repeat(300);
        assert_eq!(&encode_result(false, &big)[..3], &[0x12, 0xac, 0x02]);
        let no_key = parse_arguments(&length_delimited(1, b"sha256")).unwrap();
        assert_eq!(no_key.hash_function, "sha256");
        assert_eq!(verify(&no_key), None);
    }
}
