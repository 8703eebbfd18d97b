//! Validation of the EC public points `ring` does not know, when their key set loads:
//! P-521 (ES512) by its curve equation, secp256k1 (ES256K) with the `k256` crate, which
//! verifies ES256K signatures too. (P-256 and P-384 points: `jwks::on_curve`, with `ring`.)
//!
//! Ed25519 points are checked here too (`ed25519_valid`), with the 256-bit arithmetic of
//! `crypto-bigint` the module already has, rather than with `ed25519-dalek`, whose
//! decompression weighed about 10 KB in the module for this alone.
//!
//! P-521 is checked here rather than with the `p521` crate, which would add about 60 KB to
//! the module for this alone (ES512 signatures are the host's work, `verify`). Both curves
//! have cofactor 1, so a point on the curve (and never the point at infinity, which the
//! uncompressed form cannot write) is in the group of prime order: nothing more to check.

/// Whether `point` (uncompressed SEC1, `04 || x || y`, 66-byte coordinates) is on P-521:
/// both coordinates below p = 2^521 - 1 and `y^2 = x^3 - 3x + b (mod p)`.
pub fn p521_on_curve(point: &[u8]) -> bool {
    let Some((&4, xy)) = point.split_first() else {
        return false;
    };
    if xy.len() != 2 * P521_BYTES {
        return false;
    }
    let (x, y) = xy.split_at(P521_BYTES);
    let (Some(x), Some(y)) = (Fe::from_be(x), Fe::from_be(y)) else {
        return false;
    };
    let b = Fe::from_be(&P521_B).unwrap_or(Fe([0; 9]));
    let x3 = x.mul(&x).mul(&x);
    let three_x = x.add(&x).add(&x);
    x3.add(&b).sub(&three_x) == y.mul(&y)
}

/// Whether `point` (uncompressed SEC1, 32-byte coordinates) is a valid secp256k1 point.
pub fn secp256k1_valid(point: &[u8]) -> bool {
    point.len() == 65 && k256::PublicKey::from_sec1_bytes(point).is_ok()
}

/// Whether `bytes` is an Ed25519 public key as `ed25519-dalek`'s `VerifyingKey::from_bytes`
/// reads it (which this module called until 2026-12): y is the low 255 bits, taken modulo
/// p = 2^255 - 19 (a y at or above p is not refused), and a point with that y exists iff
/// x^2 = (y^2 - 1) / (d y^2 + 1) has a solution, that is iff (y^2 - 1)(d y^2 + 1) is zero or
/// a square modulo p: by Euler's criterion, iff its (p - 1)/2-th power is not p - 1. The
/// sign bit picks x or -x and refuses nothing (not even x = 0 with the bit set).
pub fn ed25519_valid(bytes: &[u8; 32]) -> bool {
    use crypto_bigint::{Limb, U256};
    // Arithmetic modulo 2p = 2^256 - 38, the special form `crypto-bigint` reduces by (every
    // result below 2p); the last power is reduced modulo p.
    const C: Limb = Limb(38);
    const P: U256 =
        U256::from_be_hex("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed");
    const P_MINUS_1: U256 =
        U256::from_be_hex("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffec");
    const HALF_P_MINUS_1: U256 =
        U256::from_be_hex("3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff6");
    // d = -121665/121666 (mod p), RFC 8032 5.1.
    const D: U256 =
        U256::from_be_hex("52036cee2b6ffe738cc740797779e89800700a4d4141d8ab75eb4dca135978a3");
    let mut le = *bytes;
    if let Some(top) = le.last_mut() {
        *top &= 0x7f;
    }
    let y = U256::from_le_slice(&le);
    let yy = y.mul_mod_special(&y, C);
    let u = yy.sub_mod_special(&U256::ONE, C);
    let v = yy.mul_mod_special(&D, C).add_mod_special(&U256::ONE, C);
    let uv = u.mul_mod_special(&v, C);
    let mut power = U256::ONE;
    for bit in (0..256).rev() {
        power = power.mul_mod_special(&power, C);
        if HALF_P_MINUS_1.bit_vartime(bit) {
            power = power.mul_mod_special(&uv, C);
        }
    }
    let power = if power >= P {
        power.wrapping_sub(&P)
    } else {
        power
    };
    power != P_MINUS_1
}

const P521_BYTES: usize = 66;

/// The constant b of P-521 (FIPS 186-4 D.1.2.5), big-endian.
const P521_B: [u8; P521_BYTES] = [
    0x00, 0x51, 0x95, 0x3e, 0xb9, 0x61, 0x8e, 0x1c, 0x9a, 0x1f, 0x92, 0x9a, 0x21, 0xa0, 0xb6, 0x85,
    0x40, 0xee, 0xa2, 0xda, 0x72, 0x5b, 0x99, 0xb3, 0x15, 0xf3, 0xb8, 0xb4, 0x89, 0x91, 0x8e, 0xf1,
    0x09, 0xe1, 0x56, 0x19, 0x39, 0x51, 0xec, 0x7e, 0x93, 0x7b, 0x16, 0x52, 0xc0, 0xbd, 0x3b, 0xb1,
    0xbf, 0x07, 0x35, 0x73, 0xdf, 0x88, 0x3d, 0x2c, 0x34, 0xf1, 0xef, 0x45, 0x1f, 0xd4, 0x6b, 0x50,
    0x3f, 0x00,
];

/// Bits of p = 2^521 - 1 in the top limb.
const TOP_BITS: u32 = 521 - 512;
const TOP_MASK: u64 = (1 << TOP_BITS) - 1;

/// An element of the field of P-521: nine little-endian 64-bit limbs, always reduced
/// (below p) between operations, so that equal elements are equal limbs. No secrets pass
/// here (public keys only), so nothing needs to run in constant time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fe([u64; 9]);

impl Fe {
    /// A big-endian 66-byte coordinate, if it is below p.
    fn from_be(bytes: &[u8]) -> Option<Fe> {
        if bytes.len() != P521_BYTES {
            return None;
        }
        // Eight bytes a limb from the least significant end; the top limb takes two.
        let mut limbs = [0u64; 9];
        for (limb, chunk) in limbs.iter_mut().zip(bytes.rchunks(8)) {
            *limb = chunk.iter().fold(0, |n, &b| (n << 8) | u64::from(b));
        }
        let below_p = limbs[8] < TOP_MASK
            || (limbs[8] == TOP_MASK && limbs[..8].iter().any(|l| *l != u64::MAX));
        (limbs[8] <= TOP_MASK && below_p).then_some(Fe(limbs))
    }

    /// Reduces a value below 2^576 (nine limbs): since 2^521 = 1 (mod p), the bits above
    /// 521 are added to the bits below, until none are left; then p itself is zero.
    fn reduce(mut limbs: [u64; 9]) -> Fe {
        loop {
            let high = limbs[8] >> TOP_BITS;
            if high == 0 {
                break;
            }
            limbs[8] &= TOP_MASK;
            let mut carry = high;
            for limb in &mut limbs {
                let (sum, overflow) = limb.overflowing_add(carry);
                *limb = sum;
                carry = u64::from(overflow);
                if carry == 0 {
                    break;
                }
            }
        }
        if limbs[8] == TOP_MASK && limbs[..8].iter().all(|l| *l == u64::MAX) {
            limbs = [0; 9];
        }
        Fe(limbs)
    }

    fn add(&self, other: &Fe) -> Fe {
        let mut out = [0u64; 9];
        let mut carry = 0u64;
        for ((limb, a), b) in out.iter_mut().zip(&self.0).zip(&other.0) {
            let sum = u128::from(*a) + u128::from(*b) + u128::from(carry);
            *limb = sum as u64;
            carry = (sum >> 64) as u64;
        }
        // Both below 2^521: the sum is below 2^522 and fits.
        Fe::reduce(out)
    }

    /// `self - other`: `self + (p - other)`, where `p - other` is `other`'s 521 bits
    /// inverted (p is all ones).
    fn sub(&self, other: &Fe) -> Fe {
        let mut negated = other.0.map(|l| !l);
        negated[8] &= TOP_MASK;
        self.add(&Fe(negated))
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "i, j and k are below 9 (limb indices): i + j, i + 9 and 8 + k are below 18, the length of `wide`"
    )]
    fn mul(&self, other: &Fe) -> Fe {
        let mut wide = [0u64; 18];
        for (i, a) in self.0.iter().enumerate() {
            let mut carry = 0u128;
            for (j, b) in other.0.iter().enumerate() {
                let t = u128::from(*a) * u128::from(*b) + u128::from(wide[i + j]) + carry;
                wide[i + j] = t as u64;
                carry = t >> 64;
            }
            wide[i + 9] = carry as u64;
        }
        // wide = low + 2^521 * high, with low and high below 2^521.
        let mut low = [0u64; 9];
        low.copy_from_slice(&wide[..9]);
        low[8] &= TOP_MASK;
        let mut high = [0u64; 9];
        for (k, limb) in high.iter_mut().enumerate() {
            let next = wide.get(9 + k).copied().unwrap_or(0);
            *limb = (wide[8 + k] >> TOP_BITS) | (next << (64 - TOP_BITS));
        }
        Fe::reduce(low).add(&Fe::reduce(high))
    }
}

#[cfg(test)]
mod tests {

    /// `ed25519_valid` against `ed25519-dalek`: every y near 0, near p and near 2^255 with
    /// both sign bits, and many others, valid and not.
    #[test]
    fn ed25519_points_are_read_as_ed25519_dalek_reads_them() {
        let dalek = |b: &[u8; 32]| ed25519_dalek::VerifyingKey::from_bytes(b).is_ok();
        let mut cases: Vec<[u8; 32]> = Vec::new();
        let p: [u8; 32] = {
            let mut p = [0xff; 32];
            p[0] = 0xed;
            p[31] = 0x7f;
            p
        };
        for k in 0u8..64 {
            let mut low = [0u8; 32];
            low[0] = k;
            cases.push(low);
            // p - 32 .. p + 31 and 2^255 - 64 .. 2^255 - 1.
            let mut near_p = p;
            near_p[0] = 0xed_u8.wrapping_sub(32).wrapping_add(k);
            cases.push(near_p);
            let mut top = [0xff; 32];
            top[31] = 0x7f;
            top[0] = 0xff - k;
            cases.push(top);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..3000 {
            let mut b = [0u8; 32];
            for byte in &mut b {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *byte = seed as u8;
            }
            cases.push(b);
        }
        let signed: Vec<[u8; 32]> = (cases.iter())
            .map(|c| {
                let mut c = *c;
                c[31] ^= 0x80;
                c
            })
            .collect();
        cases.extend(signed);
        let (mut valid, mut invalid) = (0, 0);
        for case in &cases {
            let expected = dalek(case);
            assert_eq!(ed25519_valid(case), expected, "{case:02x?}");
            if expected { valid += 1 } else { invalid += 1 }
        }
        // Both answers are exercised, each many times.
        assert!(
            valid > 1000 && invalid > 1000,
            "{valid} valid, {invalid} invalid"
        );
    }
    use super::*;

    /// Uncompressed P-521 points of fixed keys, from the `p521` crate (a dev-dependency).
    fn p521_point(seed: u8) -> Vec<u8> {
        let mut scalar = [seed; P521_BYTES];
        scalar[0] = 0;
        let key = p521::SecretKey::from_slice(&scalar).unwrap();
        key.public_key().to_sec1_bytes().to_vec()
    }

    fn with_coordinates(x: &[u8], y: &[u8]) -> Vec<u8> {
        [&[4][..], x, y].concat()
    }

    #[test]
    fn p521_points_of_real_keys_are_on_the_curve() {
        for seed in 1..=40u8 {
            let point = p521_point(seed);
            assert_eq!(point.len(), 133);
            assert!(p521_on_curve(&point), "seed {seed}");
        }
        // The generator (FIPS 186-4 D.1.2.5) and RFC 7520's figure 1 key.
        let g = p521::AffinePoint::GENERATOR;
        use p521::elliptic_curve::sec1::ToEncodedPoint;
        assert!(p521_on_curve(g.to_encoded_point(false).as_bytes()));
        let b64 = |s: &str| crate::jose::base64url::decode(s).unwrap();
        let rfc7520 = with_coordinates(
            &b64(
                "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt",
            ),
            &b64(
                "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1",
            ),
        );
        assert!(p521_on_curve(&rfc7520));
    }

    #[test]
    fn p521_points_off_the_curve_are_refused() {
        for seed in 1..=40u8 {
            let point = p521_point(seed);
            for i in [1, 2, 30, 66, 67, 68, 100, 132] {
                let mut off = point.clone();
                off[i] ^= 0x01;
                let crate_says = p521::PublicKey::from_sec1_bytes(&off).is_ok();
                assert_eq!(p521_on_curve(&off), crate_says, "seed {seed} byte {i}");
                assert!(!crate_says, "seed {seed} byte {i}");
            }
        }
        let point = p521_point(9);
        // (x, -y) is on the curve too; (-x, y) is not.
        let (x, y) = (&point[1..67], &point[67..]);
        let neg = |v: &[u8]| {
            let fe = Fe::from_be(v).unwrap();
            let n = Fe([0; 9]).sub(&fe);
            let mut out = [0u8; 66];
            for (i, byte) in out.iter_mut().rev().enumerate() {
                *byte = (n.0[i / 8] >> (8 * (i % 8))) as u8;
            }
            out
        };
        assert!(p521_on_curve(&with_coordinates(x, &neg(y))));
        assert!(!p521_on_curve(&with_coordinates(&neg(x), y)));
        // Not uncompressed, wrong lengths, all zeros.
        let mut compressed = point.clone();
        compressed[0] = 2;
        assert!(!p521_on_curve(&compressed));
        assert!(!p521_on_curve(&point[..132]));
        assert!(!p521_on_curve(&[&point[..], &[0]].concat()));
        assert!(!p521_on_curve(&with_coordinates(&[0; 66], &[0; 66])));
        assert!(!p521_on_curve(&[]));
    }

    #[test]
    fn p521_coordinates_must_be_below_p() {
        // x + p (it still fits in 66 bytes) satisfies the equation modulo p: refused.
        let point = p521_point(3);
        let add_p = |v: &[u8]| {
            let mut out = v.to_vec();
            // + 2^521 - 1 = + 2^521, then - 1.
            out[0] += 2;
            let mut i = out.len() - 1;
            loop {
                if out[i] > 0 {
                    out[i] -= 1;
                    break;
                }
                out[i] = 0xff;
                i -= 1;
            }
            out
        };
        let (x, y) = (&point[1..67], &point[67..]);
        assert!(!p521_on_curve(&with_coordinates(&add_p(x), y)));
        assert!(!p521_on_curve(&with_coordinates(x, &add_p(y))));
        let mut p = [0xffu8; 66];
        p[0] = 0x01;
        assert_eq!(Fe::from_be(&p), None);
        p[65] = 0xfe;
        assert!(Fe::from_be(&p).is_some());
    }

    #[test]
    fn p521_field_arithmetic_matches_small_cases() {
        let small = |v: u64| Fe([v, 0, 0, 0, 0, 0, 0, 0, 0]);
        let minus_one = Fe([
            u64::MAX - 1,
            u64::MAX,
            u64::MAX,
            u64::MAX,
            u64::MAX,
            u64::MAX,
            u64::MAX,
            u64::MAX,
            TOP_MASK,
        ]);
        assert_eq!(small(0).sub(&small(1)), minus_one);
        assert_eq!(minus_one.add(&small(1)), small(0));
        assert_eq!(minus_one.mul(&minus_one), small(1));
        assert_eq!(small(3).mul(&small(5)), small(15));
        // 2^520 * 2 = 2^521 = 1.
        let mut top = [0u64; 9];
        top[8] = 1 << (TOP_BITS - 1);
        assert_eq!(Fe(top).mul(&small(2)), small(1));
        assert_eq!(Fe(top).add(&Fe(top)), small(1));
    }

    #[test]
    fn secp256k1_points_are_validated() {
        use k256::elliptic_curve::sec1::ToEncodedPoint;
        let key = k256::SecretKey::from_slice(&[7; 32]).unwrap();
        let point = key.public_key().to_encoded_point(false).as_bytes().to_vec();
        assert_eq!(point.len(), 65);
        assert!(secp256k1_valid(&point));
        let mut off = point.clone();
        off[64] ^= 1;
        assert!(!secp256k1_valid(&off));
        let compressed = key.public_key().to_encoded_point(true);
        assert!(!secp256k1_valid(compressed.as_bytes()));
        assert!(!secp256k1_valid(&[0; 65]));
    }
}
