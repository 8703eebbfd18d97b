//! A native stand-in for Envoy's `verify_signature` foreign function, for the tests of the
//! host path (`HostCrypto`): it decodes the protobuf arguments and verifies PKCS#1 v1.5 RSA
//! or DER-encoded ECDSA (P-256, P-384, P-521) against the DER key, as BoringSSL's
//! `EVP_DigestVerify` does (high `s` included).

use p256::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use sha2::{Digest, Sha256, Sha384, Sha512};

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
pub fn native_verify_signature(args: &[u8]) -> Option<Vec<u8>> {
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
    if let (Ok(key), b"sha512") = (p521::PublicKey::from_public_key_der(der), hash) {
        let key = p521::ecdsa::VerifyingKey::from_affine(*key.as_affine()).unwrap();
        return p521::ecdsa::Signature::from_der(signature)
            .is_ok_and(|s| key.verify(text, &s).is_ok());
    }
    false
}
