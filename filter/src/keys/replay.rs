//! DPoP proofs already used, in the host's shared data so that a proof replayed to another
//! worker is refused too (RFC 9449 section 11.1). Every write is a compare-and-swap retried
//! from a fresh read (`shared_keys::update`).
//!
//! Bounded: proofs are kept until their `iat` window closes, in `BUCKETS` records of at most
//! `PER_BUCKET` entries (65,536 proofs in all). Which record a proof goes to is a keyed hash
//! (a random salt kept in shared data), so a client cannot aim its proofs at one record. A
//! record that is full of live proofs refuses new ones (the request gets 503 with
//! `Retry-After`): the filter never forgets a live proof to make room. Only requests that
//! passed every other check (a valid bound token and proof) add entries.

use crate::jose::jwks;
use crate::keys::shared::{SharedData, update_bytes};
use crate::policy::dpop::ProofUse;
use std::cell::Cell;

const BUCKETS: u64 = 1024;
const PER_BUCKET: usize = 64;
const SALT_KEY: &str = "jwt_filter.dpop.salt";

/// What the replay cache says of a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First use: recorded.
    First,
    /// Used before, inside its window.
    Replayed,
    /// Its record is full of live proofs; the oldest leaves in `retry_after_s`.
    Full { retry_after_s: u64 },
    /// Shared data refused the write, or no salt could be drawn.
    Unavailable,
}

/// One entry of a record: the first 8 bytes of a proof's id, then until when it is kept
/// (unix seconds, big-endian).
const ENTRY_BYTES: usize = 16;

/// Records `proof` at unix time `now_s` unless it was used before.
pub fn record(data: &dyn SharedData, proof: &ProofUse, now_s: u64) -> Seen {
    let Some(salt) = salt(data) else {
        return Seen::Unavailable;
    };
    let bucket = bucket(&salt, &proof.id);
    let id = u64_at(&proof.id);
    let seen = Cell::new(Seen::Unavailable);
    let written = update_bytes(data, &format!("jwt_filter.dpop.{bucket}"), &[], |record| {
        let entries = record
            .chunks_exact(ENTRY_BYTES)
            .filter_map(|e| e.split_at_checked(8))
            .map(|(id, until)| (u64_at(id), u64_at(until)));
        let mut live = Vec::with_capacity(record.len() + ENTRY_BYTES);
        let mut soonest = u64::MAX;
        for (entry, until) in entries.filter(|&(_, until)| until > now_s) {
            if entry == id {
                seen.set(Seen::Replayed);
                return None;
            }
            soonest = soonest.min(until);
            live.extend_from_slice(&entry.to_be_bytes());
            live.extend_from_slice(&until.to_be_bytes());
        }
        if live.len() >= PER_BUCKET * ENTRY_BYTES {
            seen.set(Seen::Full {
                retry_after_s: soonest.saturating_sub(now_s).max(1),
            });
            return None;
        }
        live.extend_from_slice(&id.to_be_bytes());
        live.extend_from_slice(&proof.until_s.to_be_bytes());
        seen.set(Seen::First);
        Some(live)
    });
    match (written, seen.get()) {
        (Some(_), _) => Seen::First,
        // The last attempt decided; a write that never went through is no record.
        (None, Seen::First) => Seen::Unavailable,
        (None, other) => other,
    }
}

/// The salt of the bucket hash (16 bytes): drawn once per VM id by whichever worker needs
/// it first.
fn salt(data: &dyn SharedData) -> Option<Vec<u8>> {
    let stored = Cell::new(None::<Vec<u8>>);
    let written = update_bytes(data, SALT_KEY, &[], |current| {
        stored.set(None);
        if current.len() == 16 {
            stored.set(Some(current.to_vec()));
            return None;
        }
        let mut bytes = vec![0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).ok()?;
        Some(bytes)
    });
    written.or_else(|| stored.take())
}

/// The record a proof goes to.
fn bucket(salt: &[u8], id: &[u8; 32]) -> u64 {
    u64_at(&jwks::sha256(&[salt, id].concat())) % BUCKETS
}

fn u64_at(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .fold(0, |n, &b| (n << 8) | u64::from(b))
}

#[cfg(test)]
mod tests;
