//! Canonical base64url (RFC 7515 section 2): URL-safe alphabet, no padding, no whitespace,
//! zero trailing bits. Anything else is a different byte string to some other parser and
//! is refused.
//!
//! Written here rather than taken from the `base64` crate, whose general engine weighed
//! about 4 KB in the module for these two functions (docs/performance.md, "Module size");
//! a test compares both on every short input and many long ones.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Each byte's 6-bit value, or `INVALID`.
const INVALID: u8 = 0xff;
#[expect(
    clippy::indexing_slicing,
    reason = "evaluated at compile time, with i below 64 and bytes below 256: an index out of bounds fails the build"
)]
const VALUES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

fn value(c: u8) -> Option<u32> {
    match VALUES.get(usize::from(c)) {
        Some(&v) if v != INVALID => Some(u32::from(v)),
        _ => None,
    }
}

pub fn decode(input: &str) -> Option<Vec<u8>> {
    let input = input.as_bytes();
    // Whole groups of 4 characters carry 3 bytes; a last group of 2 or 3 characters carries
    // 1 or 2 bytes and its spare low bits must be zero; a last group of 1 carries none.
    let (groups, rest) = (input.chunks_exact(4), input.chunks_exact(4).remainder());
    let tail = match rest.len() {
        0 => 0,
        2 => 1,
        3 => 2,
        _ => return None,
    };
    let mut out = vec![0u8; input.len() / 4 * 3 + tail];
    let (whole, last) = out.split_at_mut(input.len() / 4 * 3);
    for (group, bytes) in groups.zip(whole.chunks_exact_mut(3)) {
        let mut bits = 0u32;
        for &c in group {
            bits = bits << 6 | value(c)?;
        }
        bytes.copy_from_slice(&[(bits >> 16) as u8, (bits >> 8) as u8, bits as u8]);
    }
    let mut bits = 0u32;
    for &c in rest {
        bits = bits << 6 | value(c)?;
    }
    match (rest.len(), last) {
        (0, []) => {}
        (2, [a]) if bits & 0xf == 0 => *a = (bits >> 4) as u8,
        (3, [a, b]) if bits & 0x3 == 0 => {
            *a = (bits >> 10) as u8;
            *b = (bits >> 2) as u8;
        }
        _ => return None,
    }
    Some(out)
}

pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let bits = byte(0) << 16 | byte(1) << 8 | byte(2);
        for i in 0..=chunk.len() {
            let six = (bits >> (18 - 6 * i)) & 0x3f;
            if let Some(&c) = ALPHABET.get(six as usize) {
                out.push(char::from(c));
            }
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648 section 4), as HTTP Basic credentials are written:
/// the URL-safe encoding with its two characters swapped back and `=` to a multiple of 4.
pub fn encode_padded(bytes: &[u8]) -> String {
    let mut out: String = (encode(bytes).chars())
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_padded_is_the_base64_crates_standard() {
        use base64::Engine;
        let bytes: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
        for len in 0..bytes.len() {
            let expected = base64::engine::general_purpose::STANDARD.encode(&bytes[..len]);
            assert_eq!(encode_padded(&bytes[..len]), expected, "{len}");
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

    /// The `base64` crate with the configuration this module used before its own codec.
    const STRICT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(false),
    );

    fn reference(input: &str) -> Option<Vec<u8>> {
        use base64::Engine;
        STRICT.decode(input).ok()
    }

    #[test]
    fn encode_is_the_base64_crates_and_decodes_back() {
        use base64::Engine;
        let bytes: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
        for len in 0..bytes.len() {
            let text = encode(&bytes[..len]);
            assert_eq!(text, STRICT.encode(&bytes[..len]), "{len}");
            assert_eq!(decode(&text).as_deref(), Some(&bytes[..len]), "{len}");
        }
    }

    #[test]
    fn decodes_as_the_base64_crate_did() {
        // Every string of up to 3 characters from an alphabet with every kind of byte: the
        // 64 characters, padding, the standard alphabet's two, space, NUL, non-ASCII.
        let mut chars: Vec<char> = ALPHABET.iter().map(|&c| char::from(c)).collect();
        chars.extend(['=', '+', '/', ' ', '\0', '\n', '.', 'é']);
        let mut inputs = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = (inputs.iter())
                .flat_map(|s| chars.iter().map(move |c| format!("{s}{c}")))
                .collect();
            inputs.extend(longer);
        }
        // Longer ones: each length up to 70, each character position changed in turn.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 4..70 {
            for _ in 0..40 {
                let s: String = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        chars[(seed % 66) as usize]
                    })
                    .collect();
                inputs.push(s);
            }
        }
        for input in &inputs {
            assert_eq!(decode(input), reference(input), "{input:?}");
        }
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let text = encode(&bytes);
            assert_eq!(decode(&text), Some(bytes.clone()));
            use base64::Engine;
            assert_eq!(
                text,
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes)
            );
        }
    }
}
