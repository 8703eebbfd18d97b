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

use crate::dpop::ProofUse;
use crate::shared_keys::{SharedData, update};
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

/// One record: (the first 8 bytes of a proof's id, until when it is kept).
type Bucket = Vec<(u64, u64)>;

/// Records `proof` at unix time `now_s` unless it was used before.
pub fn record(data: &dyn SharedData, proof: &ProofUse, now_s: u64) -> Seen {
    let Some(salt) = salt(data) else {
        return Seen::Unavailable;
    };
    let bucket = bucket(&salt, &proof.id);
    let id = u64_at(&proof.id);
    let seen = Cell::new(Seen::Unavailable);
    let written = update(
        data,
        &format!("jwt_filter.dpop.{bucket}"),
        |entries: &Bucket| {
            if entries.iter().any(|&(e, until)| e == id && until > now_s) {
                seen.set(Seen::Replayed);
                return None;
            }
            let mut live: Bucket = entries
                .iter()
                .copied()
                .filter(|&(_, until)| until > now_s)
                .collect();
            if live.len() >= PER_BUCKET {
                let soonest = live.iter().map(|&(_, until)| until).min().unwrap_or(now_s);
                seen.set(Seen::Full {
                    retry_after_s: soonest.saturating_sub(now_s).max(1),
                });
                return None;
            }
            live.push((id, proof.until_s));
            seen.set(Seen::First);
            Some(live)
        },
    );
    match (written, seen.get()) {
        (Some(_), _) => Seen::First,
        // The last attempt decided; a write that never went through is no record.
        (None, Seen::First) => Seen::Unavailable,
        (None, other) => other,
    }
}

/// The salt of the bucket hash: drawn once per VM id by whichever worker needs it first.
fn salt(data: &dyn SharedData) -> Option<String> {
    let stored = Cell::new(None::<String>);
    let written = update(data, SALT_KEY, |current: &String| {
        stored.set(None);
        if !current.is_empty() {
            stored.set(Some(current.clone()));
            return None;
        }
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).ok()?;
        Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
    });
    written.or_else(|| stored.take())
}

/// The record a proof goes to.
fn bucket(salt: &str, id: &[u8; 32]) -> u64 {
    let mut keyed = ring::digest::Context::new(&ring::digest::SHA256);
    keyed.update(salt.as_bytes());
    keyed.update(id);
    u64_at(keyed.finish().as_ref()) % BUCKETS
}

fn u64_at(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .fold(0, |n, &b| (n << 8) | u64::from(b))
}

#[cfg(test)]
mod tests;
