//! The proxy-wasm header-map encoding (`proxy_get_header_map_pairs`,
//! `proxy_set_header_map_pairs`, `proxy_send_local_response`, `proxy_http_call`): a
//! little-endian u32 pair count, a u32 name size and a u32 value size per pair, then each
//! name and each value followed by a NUL byte. The filter decodes what the host gives and
//! encodes what it sends; the harness, as the host, does the reverse with the same code.
//!
//! Names and values are bytes: hosts pass what the client sent, UTF-8 or not. Decoding
//! trusts no size; a map that does not add up is `None`, never a panic.
//!
//! The functions that are not generic are `#[inline]`: across the crate boundary, without
//! it, the filter's module is a few hundred bytes larger than when this was one of its
//! modules.

/// The pairs of an encoded map, in order, borrowed from `bytes`.
#[inline]
pub fn decode(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = usize::try_from(read_u32(bytes)?).ok()?;
    let sizes_end = count.checked_mul(8)?.checked_add(4)?;
    let sizes = bytes.get(4..sizes_end)?;
    let mut data = bytes.get(sizes_end..)?;
    let mut pairs = Vec::with_capacity(count);
    for size in sizes.chunks_exact(8) {
        let (name, rest) = take_terminated(data, read_u32(size)?)?;
        let (value, rest) = take_terminated(rest, read_u32(size.get(4..)?)?)?;
        pairs.push((name, value));
        data = rest;
    }
    Some(pairs)
}

/// The encoding of `pairs`.
pub fn encode<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
    let data: usize = pairs
        .iter()
        .map(|(n, v)| n.as_ref().len() + v.as_ref().len() + 2)
        .sum();
    let mut out = Vec::with_capacity(4 + pairs.len() * 8 + data);
    let len = |b: &[u8]| u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&len(name.as_ref()));
        out.extend_from_slice(&len(value.as_ref()));
    }
    for (name, value) in pairs {
        for part in [name.as_ref(), value.as_ref()] {
            out.extend_from_slice(part);
            out.push(0);
        }
    }
    out
}

#[inline]
fn read_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// The first `size` bytes of `data` and what follows their NUL terminator.
#[inline]
fn take_terminated(data: &[u8], size: u32) -> Option<(&[u8], &[u8])> {
    let size = usize::try_from(size).ok()?;
    let part = data.get(..size)?;
    match data.get(size..)?.split_first() {
        Some((0, rest)) => Some((part, rest)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    reason = "tests: an index out of range is a failed test"
)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_bytes_that_are_not_utf8() {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":path", b"/api"),
            (b"x-foo", b"\xff\xfe"),
            (b"\xc3", b""),
            (b"empty", b""),
        ];
        assert_eq!(decode(&encode(&pairs)), Some(pairs));
        assert_eq!(decode(&[]), Some(Vec::new()));
        assert_eq!(decode(&encode::<&[u8], &[u8]>(&[])), Some(Vec::new()));
    }

    #[test]
    fn a_nul_inside_a_name_or_value_is_part_of_it() {
        // The sizes say where a part ends, not the first NUL byte.
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"x\0y", b"\x80\0"), (b"z", b"\0")];
        assert_eq!(decode(&encode(&pairs)), Some(pairs));
    }

    #[test]
    fn owned_pairs_encode_as_borrowed_ones_do() {
        let owned = vec![(b"a".to_vec(), b"b".to_vec()), (b"c".to_vec(), Vec::new())];
        assert_eq!(encode(&owned), encode(&[("a", "b"), ("c", "")]));
    }

    #[test]
    fn refuses_maps_that_do_not_add_up() {
        let good = encode(&[("a", "bc"), ("d", "e")]);
        // Every truncation, a missing terminator, a count or size beyond the data.
        for end in 1..good.len() {
            assert_eq!(decode(&good[..end]), None, "truncated at {end}");
        }
        let mut unterminated = good.clone();
        let last = unterminated.len() - 1;
        unterminated[last] = b'x';
        assert_eq!(decode(&unterminated), None);
        let mut huge_count = good.clone();
        huge_count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge_count), None);
        let mut huge_size = good;
        huge_size[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge_size), None);
        // A count with no sizes after it.
        assert_eq!(decode(&[5, 0, 0, 0]), None);
    }

    #[test]
    fn trailing_bytes_after_the_last_pair_are_ignored() {
        let mut bytes = encode(&[("a", "b")]);
        bytes.extend_from_slice(b"junk");
        assert_eq!(decode(&bytes), Some(vec![(&b"a"[..], &b"b"[..])]));
    }
}
