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

pub fn encode(bytes: &[u8]) -> String {
    STRICT.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

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
