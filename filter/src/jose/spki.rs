//! The DER forms the host's `verify_signature` takes: `SubjectPublicKeyInfo` for RSA and
//! EC keys (P-256, P-384, P-521; RFC 5280, 3279, 5480), built once per key when its set
//! loads, and ECDSA signatures as `SEQUENCE { r, s }` instead of JOSE's `r || s`.

const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const SECP384R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// 1.3.132.0.35 (RFC 5480): P-521.
pub const SECP521R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

/// An RSA key from its big-endian modulus and exponent (no leading zeros).
pub fn rsa(n: &[u8], e: &[u8]) -> Vec<u8> {
    let key = tlv(0x30, &[integer(n), integer(e)].concat());
    let algorithm = tlv(
        0x30,
        &[tlv(0x06, RSA_ENCRYPTION), vec![0x05, 0x00]].concat(),
    );
    tlv(0x30, &[algorithm, bit_string(&key)].concat())
}

/// An EC key from its curve's OID and its uncompressed SEC1 point.
pub fn ec(curve: &[u8], point: &[u8]) -> Vec<u8> {
    let algorithm = tlv(0x30, &[tlv(0x06, EC_PUBLIC_KEY), tlv(0x06, curve)].concat());
    tlv(0x30, &[algorithm, bit_string(point)].concat())
}

/// A JOSE ECDSA signature, `r || s` of two equal halves, in DER; `None` when it has an odd
/// length or a zero scalar (the host would refuse those too, but need not be asked).
pub fn ecdsa_signature(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    if r.iter().all(|b| *b == 0) || s.iter().all(|b| *b == 0) {
        return None;
    }
    Some(tlv(0x30, &[integer(r), integer(s)].concat()))
}

/// A non-negative big-endian integer, minimally encoded.
fn integer(mut be: &[u8]) -> Vec<u8> {
    while let [0, rest @ ..] = be {
        be = rest;
    }
    // A leading zero keeps a value with its top bit set positive (and encodes zero).
    let pad = be.first().is_none_or(|b| b & 0x80 != 0);
    tlv(0x02, &[if pad { &[0][..] } else { &[] }, be].concat())
}

fn bit_string(content: &[u8]) -> Vec<u8> {
    tlv(0x03, &[&[0][..], content].concat())
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let mut significant = &bytes[..];
        while let [0, rest @ ..] = significant {
            significant = rest;
        }
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::pem;

    #[test]
    fn rsa_matches_the_rsa_crate() {
        use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem("rsa-a"))
            .unwrap()
            .to_public_key();
        let want = key.to_public_key_der().unwrap();
        assert_eq!(
            rsa(&key.n().to_bytes_be(), &key.e().to_bytes_be()),
            want.as_bytes()
        );
    }

    #[test]
    fn ec_matches_the_p256_crate() {
        use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
        let key = p256::SecretKey::from_pkcs8_pem(&pem("ec256.p8"))
            .unwrap()
            .public_key();
        let want = key.to_public_key_der().unwrap();
        assert_eq!(ec(PRIME256V1, &key.to_sec1_bytes()), want.as_bytes());
    }

    #[test]
    fn p521_keys_and_signatures_match_the_p521_crate() {
        use p521::pkcs8::EncodePublicKey;
        let mut scalar = [3u8; 66];
        scalar[0] = 1;
        let key = p521::SecretKey::from_slice(&scalar).unwrap().public_key();
        let want = key.to_public_key_der().unwrap();
        assert_eq!(ec(SECP521R1, &key.to_sec1_bytes()), want.as_bytes());
        // 132-byte signatures: a DER SEQUENCE longer than 127 bytes (long-form length).
        let mut raw = [0u8; 132];
        raw[0] = 0x01; // r with its top byte as P-521's are: 0 or 1
        raw[1] = 0xff;
        raw[66] = 0x01;
        raw[131] = 0x07;
        let der = ecdsa_signature(&raw).unwrap();
        let want = p521::ecdsa::Signature::from_slice(&raw).unwrap().to_der();
        assert_eq!(der, want.as_bytes());
        assert_eq!(&der[..2], &[0x30, 0x81]);
    }

    #[test]
    fn ecdsa_signatures_match_the_p256_crate() {
        let mut raw = [0u8; 64];
        raw[0] = 0x80; // r with its top bit set
        raw[40] = 0x01; // s with leading zeros
        let want = p256::ecdsa::Signature::from_slice(&raw).unwrap().to_der();
        assert_eq!(ecdsa_signature(&raw).unwrap(), want.as_bytes());
        assert_eq!(ecdsa_signature(&[0; 64]), None);
        assert_eq!(ecdsa_signature(&[[0; 32], [1; 32]].concat()), None);
        assert_eq!(ecdsa_signature(&[1; 63]), None);
    }

    #[test]
    fn long_lengths_use_the_long_form() {
        assert_eq!(&tlv(0x04, &[7; 300])[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(&tlv(0x04, &[7; 128])[..3], &[0x04, 0x81, 0x80]);
        assert_eq!(integer(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(&[0x7f]), vec![0x02, 0x01, 0x7f]);
        assert_eq!(integer(&[0, 0, 0x7f]), vec![0x02, 0x01, 0x7f]);
    }
}
