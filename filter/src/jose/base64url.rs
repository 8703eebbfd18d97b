//! Canonical base64url (RFC 7515 section 2): URL-safe alphabet, no padding, no whitespace,
//! zero trailing bits. Anything else is a different byte string to some other parser and
//! is refused.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const STRICT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

pub fn decode(input: &str) -> Option<Vec<u8>> {
    STRICT.decode(input).ok()
}

/// Written out rather than the `base64` crate's encoder, which costs 2.8 KB of the module
/// (only server nonces encode in wasm).
pub fn encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        // 1, 2 or 3 bytes: 2, 3 or 4 characters (no padding).
        for i in 0..=chunk.len() {
            let six = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(
                ALPHABET.get(six as usize).copied().unwrap_or(b'A'),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_the_base64_crates_and_decodes_back() {
        let bytes: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
        for len in 0..bytes.len() {
            let text = encode(&bytes[..len]);
            assert_eq!(text, STRICT.encode(&bytes[..len]), "{len}");
            assert_eq!(decode(&text).as_deref(), Some(&bytes[..len]), "{len}");
        }
    }

    #[test]
    fn only_canonical_base64url_decodes() {
        assert_eq!(decode("Zm9v"), Some(b"foo".to_vec()));
        assert_eq!(decode("_-8"), Some(vec![0xff, 0xef]));
        assert_eq!(decode(""), Some(vec![]));
        for bad in [
            "Zm9v=", "Zg==", "Zm 9v", "Zm9v\n", "+/8", "Zh", "Z", "Zm9v!",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
