//! Server-provided DPoP nonces (RFC 9449 sections 8 and 9), stateless: a nonce is the
//! base64url of a time slot's number (8 bytes, big-endian) and the first 16 bytes of
//! HMAC-SHA256 under a secret of that number and the lifetime, 32 characters. Every worker
//! and every gateway that has the secret issues the same nonce in the same slot and accepts
//! the others' with no shared state; one without the secret can neither make one nor learn
//! the secret from one.
//!
//! Time is cut in slots of `lifetime_s / 2` seconds. A nonce names the slot it was issued
//! in and is accepted in that slot and the next: from its issue for between `lifetime_s / 2`
//! and `lifetime_s` seconds (rounded down to even seconds); never before its slot begins,
//! except by the clock skew (`iat_leeway_s`) that a gateway whose clock runs ahead needs.
//! The lifetime is in the MAC: a gateway with another lifetime refuses the nonce instead of
//! reading its slot number in other units.
//!
//! Secrets: the first signs, every one verifies (a rollover: add the new secret second,
//! then once every gateway has it, first; drop the old one a lifetime later).

use crate::jose::base64url;
use ring::hmac;

/// Fewest bytes of a secret: HMAC-SHA256's output (RFC 2104 section 3; as an HS256 key,
/// RFC 7518 section 3.2), so that guessing the secret is no easier than forging a MAC.
pub const MIN_SECRET_BYTES: usize = 32;
/// Most secrets (one signs; the others are being rolled in or out).
pub const MAX_SECRETS: usize = 4;
/// The MAC's bytes kept in a nonce: 128 bits, out of reach of online guessing.
const MAC_BYTES: usize = 16;
/// A nonce's characters: base64url of 8 + `MAC_BYTES` bytes.
pub const NONCE_CHARS: usize = 32;

/// A provider's nonce keys and lifetime (`dpop.nonce`).
#[derive(Clone, PartialEq, Eq)]
pub struct Nonces {
    /// The first signs, every one verifies; each at least `MIN_SECRET_BYTES`.
    secrets: Vec<Vec<u8>>,
    pub lifetime_s: u64,
}

/// Never shows a secret.
impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nonces {{ lifetime_s: {}, .. }}", self.lifetime_s)
    }
}

/// Why a proof's nonce is refused (`use_dpop_nonce`, with a fresh one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceError {
    /// The proof has no `nonce` claim (or one that is not a string).
    Missing,
    /// Not one of ours, or no longer (or not yet) valid: the client cannot tell the
    /// difference and does the same in either case.
    Invalid,
}

impl NonceError {
    pub fn message(self) -> &'static str {
        match self {
            NonceError::Missing => "Resource server requires nonce in DPoP proof",
            NonceError::Invalid => "DPoP proof nonce is invalid or expired",
        }
    }
}

/// A nonce that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Until when (unix seconds, excluded) it is accepted: a proof carrying it passes no
    /// later, so its replay window ends there.
    pub until_s: u64,
    /// It is no longer the current one (the slot rolled): the client should be sent a
    /// fresh one on the answer.
    pub rolled: bool,
}

impl Nonces {
    /// `secrets` (the first signs) for nonces of `lifetime_s` (at least 2).
    pub fn new(secrets: Vec<Vec<u8>>, lifetime_s: u64) -> Self {
        Nonces {
            secrets,
            lifetime_s,
        }
    }

    fn slot_s(&self) -> u64 {
        (self.lifetime_s / 2).max(1)
    }

    /// The nonce of the slot `now` is in.
    pub fn issue(&self, now: u64) -> String {
        let slot = now / self.slot_s();
        let mut bytes = slot.to_be_bytes().to_vec();
        if let Some(secret) = self.secrets.first() {
            bytes.extend(mac(secret, self.lifetime_s, slot));
        }
        base64url::encode(&bytes)
    }

    /// Whether `nonce` is accepted at `now`, with `skew_s` of clock skew for a nonce whose
    /// slot has not begun yet here.
    pub fn check(&self, nonce: &str, now: u64, skew_s: u64) -> Result<Accepted, NonceError> {
        if nonce.len() != NONCE_CHARS {
            return Err(NonceError::Invalid);
        }
        let bytes = base64url::decode(nonce).ok_or(NonceError::Invalid)?;
        let (Some(slot), Some(given)) = (bytes.get(..8), bytes.get(8..)) else {
            return Err(NonceError::Invalid);
        };
        let slot = u64::from_be_bytes(slot.try_into().map_err(|_| NonceError::Invalid)?);
        let slot_s = self.slot_s();
        let begins = slot.saturating_mul(slot_s);
        let until_s = begins.saturating_add(2 * slot_s);
        // Not before its slot (but for clock skew), and no longer than its slot and the next.
        if begins > now.saturating_add(skew_s) || now >= until_s {
            return Err(NonceError::Invalid);
        }
        let ours = self
            .secrets
            .iter()
            .any(|s| same(&mac(s, self.lifetime_s, slot), given));
        if !ours {
            return Err(NonceError::Invalid);
        }
        Ok(Accepted {
            until_s,
            rolled: slot < now / slot_s,
        })
    }
}

/// The first `MAC_BYTES` of HMAC-SHA256(secret, label || lifetime || slot).
fn mac(secret: &[u8], lifetime_s: u64, slot: u64) -> [u8; MAC_BYTES] {
    let message = [
        &b"jwt_filter DPoP nonce\0"[..],
        &lifetime_s.to_be_bytes(),
        &slot.to_be_bytes(),
    ]
    .concat();
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &message);
    let mut out = [0u8; MAC_BYTES];
    for (o, b) in out.iter_mut().zip(tag.as_ref()) {
        *o = *b;
    }
    out
}

/// `a == b` in time that does not depend on where they differ.
fn same(a: &[u8; MAC_BYTES], b: &[u8]) -> bool {
    b.len() == MAC_BYTES && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"0123456789abcdef0123456789abcdef";
    const B: &[u8] = b"fedcba9876543210fedcba9876543210";
    const NOW: u64 = 1_800_000_000;

    fn nonces(secrets: &[&[u8]]) -> Nonces {
        Nonces::new(secrets.iter().map(|s| s.to_vec()).collect(), 60)
    }

    #[test]
    fn a_nonce_is_accepted_in_its_slot_and_the_next_only() {
        let n = nonces(&[A]);
        // Slots of 30 s; NOW is the start of one.
        assert_eq!(NOW % 30, 0);
        let nonce = n.issue(NOW);
        assert_eq!(nonce.len(), NONCE_CHARS);
        assert_eq!(n.issue(NOW + 29), nonce, "one nonce per slot");
        assert_ne!(n.issue(NOW + 30), nonce);
        let fresh = n.check(&nonce, NOW + 29, 0).unwrap();
        assert_eq!((fresh.until_s, fresh.rolled), (NOW + 60, false));
        let rolled = n.check(&nonce, NOW + 59, 0).unwrap();
        assert_eq!((rolled.until_s, rolled.rolled), (NOW + 60, true));
    }

    #[test]
    fn a_stale_nonce_is_refused() {
        let n = nonces(&[A]);
        let nonce = n.issue(NOW);
        assert_eq!(n.check(&nonce, NOW + 60, 30), Err(NonceError::Invalid));
        assert_eq!(n.check(&nonce, NOW + 10_000, 0), Err(NonceError::Invalid));
    }

    #[test]
    fn a_future_nonce_is_refused_beyond_the_clock_skew() {
        let n = nonces(&[A]);
        let ahead = n.issue(NOW + 30);
        assert_eq!(n.check(&ahead, NOW, 0), Err(NonceError::Invalid));
        assert_eq!(n.check(&ahead, NOW + 19, 10), Err(NonceError::Invalid));
        assert!(n.check(&ahead, NOW + 20, 10).is_ok(), "within the skew");
        let far = n.issue(NOW + 3_600);
        assert_eq!(n.check(&far, NOW, 30), Err(NonceError::Invalid));
    }

    #[test]
    fn a_forged_nonce_is_refused() {
        let n = nonces(&[A]);
        let mut bytes = base64url::decode(&n.issue(NOW)).unwrap();
        // Every byte of the MAC counts.
        for i in 8..bytes.len() {
            bytes[i] ^= 1;
            let forged = base64url::encode(&bytes);
            assert_eq!(n.check(&forged, NOW, 0), Err(NonceError::Invalid), "{i}");
            bytes[i] ^= 1;
        }
        // The slot is in the MAC: another slot's number with this MAC fails.
        let mut moved = bytes.clone();
        moved[7] ^= 1;
        let moved = base64url::encode(&moved);
        assert_eq!(n.check(&moved, NOW + 30, 0), Err(NonceError::Invalid));
        // Zeros, as a client that makes one up might send.
        let zeros = base64url::encode(&[&(NOW / 30).to_be_bytes()[..], &[0; 16]].concat());
        assert_eq!(n.check(&zeros, NOW, 0), Err(NonceError::Invalid));
        assert!(n.check(&base64url::encode(&bytes), NOW, 0).is_ok());
    }

    #[test]
    fn a_nonce_of_another_secret_or_lifetime_is_refused() {
        let other = nonces(&[B]).issue(NOW);
        assert_eq!(nonces(&[A]).check(&other, NOW, 0), Err(NonceError::Invalid));
        let longer = Nonces::new(vec![A.to_vec()], 61).issue(NOW);
        assert_eq!(
            nonces(&[A]).check(&longer, NOW, 0),
            Err(NonceError::Invalid)
        );
    }

    #[test]
    fn during_a_rollover_the_first_secret_signs_and_every_one_verifies() {
        let both = nonces(&[A, B]);
        let (by_a, by_b) = (nonces(&[A]).issue(NOW), nonces(&[B]).issue(NOW));
        assert_eq!(both.issue(NOW), by_a);
        assert!(both.check(&by_a, NOW, 0).is_ok());
        assert!(both.check(&by_b, NOW, 0).is_ok());
        assert_eq!(nonces(&[B]).check(&by_a, NOW, 0), Err(NonceError::Invalid));
    }

    #[test]
    fn a_truncated_or_longer_nonce_is_refused() {
        let n = nonces(&[A]);
        let nonce = n.issue(NOW);
        // 30 characters: 22 bytes, a MAC of 14 (a prefix of the right one).
        let truncated = nonce.get(..30).unwrap();
        assert_eq!(n.check(truncated, NOW, 0), Err(NonceError::Invalid));
        let longer = format!("{nonce}AAAA");
        assert_eq!(n.check(&longer, NOW, 0), Err(NonceError::Invalid));
        assert_eq!(n.check("", NOW, 0), Err(NonceError::Invalid));
        // 32 characters that are not canonical base64url.
        let padded = format!("{truncated}==");
        assert_eq!(n.check(&padded, NOW, 0), Err(NonceError::Invalid));
    }

    #[test]
    fn the_debug_form_shows_no_secret() {
        let shown = format!("{:?}", nonces(&[A]));
        assert!(!shown.contains("0123"), "{shown}");
    }
}
