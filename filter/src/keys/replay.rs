//! DPoP proofs already used, in the host's shared data so that a proof replayed to another
//! worker is refused too (RFC 9449 section 11.1). Every write is a compare-and-swap retried
//! from a fresh read (`shared::update_bytes`).
//!
//! Sized for a busy gateway (docs/security.md, "The DPoP replay cache"): records are
//! time-sliced. A proof belongs to the slot of `SLOT_S` seconds in which its window closes
//! (`ProofUse::until_s`), and within it to one of `BUCKETS` records, chosen by a keyed hash
//! (a random salt kept in shared data, so a client cannot aim its proofs at one record).
//! A record is a header (its slot, 4 bytes) and at most `PER_RECORD` 8-byte fingerprints of the same
//! keyed hash, nothing else: expiry drops whole slots (a record whose slot has ended is
//! started afresh by the next proof that lands there), so no entry carries a time. `RING`
//! slots cover the longest window; a slot's records reuse the keys of the slot `RING`
//! before it, so the number of keys and the memory are fixed:
//! `RING x BUCKETS` records of at most `4 + 8 x PER_RECORD` bytes (49,152 keys, 50.1 MB of
//! values at most, ~57 MB with Envoy's own per-key cost: a record and its terminating NUL
//! fit the allocator's 1,024-byte size class).
//!
//! Within a slot a record only grows, so a full record stays full until its slot ends: a
//! proof whose record is full goes to the next one (linear probing, up to `PROBES` records),
//! and a lookup walks on only past full records. That keeps the cache exact: the same proof
//! always walks the same records, so it is found wherever it went. When all `PROBES`
//! records are full the proof is refused (503 with `Retry-After`: fail closed, nothing live
//! is forgotten). Only requests that passed every other check add entries.
//!
//! Exactness: a replay is never accepted (same proof, same hash, same records). A new proof
//! is refused as a replay only if its 64-bit fingerprint equals one of the at most 127 in
//! its record: 127 / 2^64 = 7e-18 per request, under a secret salt a client cannot aim at.

use crate::jose::jwks;
use crate::keys::shared::{SharedData, update_bytes};
use crate::policy::dpop::ProofUse;
use std::cell::Cell;

/// Records per slot.
pub const BUCKETS: u64 = 1024;
/// Fingerprints per record.
pub const PER_RECORD: usize = 127;
/// Slots whose records exist at once: the live ones and one just ended (a grace slot
/// against clocks that differ by less than a slot between workers).
pub const RING: u64 = 48;
/// Records a proof may try within its slot.
pub const PROBES: u64 = 8;
/// The shortest slot, in seconds (`Geometry::for_span`).
pub const SLOT_S: u64 = 8;

const SALT_KEY: &str = "jwt_filter.dpop.salt";
const HEADER: usize = 4;
const ENTRY: usize = 8;

/// What the replay cache says of a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First use: recorded.
    First,
    /// Used before, inside its window.
    Replayed,
    /// Its records are full of live proofs; new proofs go to the next slot in
    /// `retry_after_s`.
    Full { retry_after_s: u64 },
    /// Shared data refused the write, or no salt could be drawn.
    Unavailable,
}

/// How time is sliced: `slot_s` seconds per slot, so that `RING` slots cover a window of
/// `span_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub slot_s: u64,
}

impl Geometry {
    /// The slots for proofs whose window closes at most `span_s` seconds from now: `SLOT_S`
    /// seconds (any window up to 368 s), doubled until `RING - 2` slots cover `span_s`. One
    /// geometry for every window up to 368 s, so that a configuration change between such
    /// windows keeps the proofs already recorded.
    pub fn for_span(span_s: u64) -> Geometry {
        let mut slot_s = SLOT_S;
        while slot_s.saturating_mul(RING - 2) < span_s {
            slot_s = slot_s.saturating_mul(2);
        }
        Geometry { slot_s }
    }

    /// Proofs per second the cache takes sustained, at `fill` of its capacity per slot.
    pub fn rate(&self, fill: f64) -> f64 {
        (BUCKETS as f64) * (PER_RECORD as f64) * fill / (self.slot_s as f64)
    }
}

/// The replay cache as one worker sees it: the geometry, and the salt once read.
#[derive(Debug)]
pub struct ReplayCache {
    geometry: Geometry,
    /// The salt of the keyed hash: it never changes while this VM lives (shared data is
    /// dropped only with the last VM of the VM id).
    salt: Cell<Option<[u8; 16]>>,
}

/// Where a proof goes: its slot, first record and fingerprint.
struct Place {
    slot: u64,
    bucket: u64,
    fingerprint: [u8; ENTRY],
}

/// What one record said.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Recorded,
    Replayed,
    /// Full: the proof walks on.
    Next,
    /// Another slot's live record, or shared data failed.
    Refused,
}

impl ReplayCache {
    pub fn new(geometry: Geometry) -> Self {
        ReplayCache {
            geometry,
            salt: Cell::new(None),
        }
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Records `proof` at unix time `now_s` unless it was used before.
    pub fn record(&self, data: &dyn SharedData, proof: &ProofUse, now_s: u64) -> Seen {
        let Some(salt) = self.salt(data) else {
            return Seen::Unavailable;
        };
        let slot_s = self.geometry.slot_s;
        let place = place(&salt, proof, slot_s);
        let current = now_s / slot_s;
        // A window longer than the ring covers (never with `for_span`'s geometry).
        if place.slot > current + (RING - 2) {
            return Seen::Unavailable;
        }
        let position = place.slot % RING;
        for probe in 0..PROBES {
            let bucket = (place.bucket + probe) % BUCKETS;
            let key = format!("jwt_filter.replay.{slot_s}.{position}.{bucket}");
            match step(data, &key, &place, current) {
                Step::Recorded => return Seen::First,
                Step::Replayed => return Seen::Replayed,
                Step::Refused => return Seen::Unavailable,
                Step::Next => {}
            }
        }
        let next_slot_s = (place.slot + 1).saturating_mul(slot_s);
        Seen::Full {
            retry_after_s: next_slot_s.saturating_sub(proof.until_s).max(1),
        }
    }

    /// The salt, drawn once per VM id by whichever worker needs it first.
    fn salt(&self, data: &dyn SharedData) -> Option<[u8; 16]> {
        if let Some(salt) = self.salt.get() {
            return Some(salt);
        }
        let salt: [u8; 16] = shared_salt(data)?.try_into().ok()?;
        self.salt.set(Some(salt));
        Some(salt)
    }
}

/// One record's part of `record`: the proof is found, added, or walks on.
fn step(data: &dyn SharedData, key: &str, place: &Place, current: u64) -> Step {
    let said = Cell::new(Step::Refused);
    let written = update_bytes(data, key, &[], |record| {
        said.set(Step::Refused);
        let (header, entries) = record.split_at_checked(HEADER).unwrap_or((&[], &[]));
        let slot = (header.len() == HEADER).then(|| u64_at(header));
        let mut next = match slot {
            Some(s) if s == place.slot => {
                if entries.chunks_exact(ENTRY).any(|e| e == place.fingerprint) {
                    said.set(Step::Replayed);
                    return None;
                }
                if entries.len() >= PER_RECORD * ENTRY {
                    said.set(Step::Next);
                    return None;
                }
                record.to_vec()
            }
            // A record of a slot that ended (a slot of grace before), or none yet: it
            // starts afresh for this slot.
            Some(s) if s.saturating_add(2) <= current => header_of(place.slot)?,
            None => header_of(place.slot)?,
            // A live record of another slot at this position: only a clock far off or a
            // geometry that does not cover the window gets here. Fail closed.
            Some(_) => return None,
        };
        next.extend_from_slice(&place.fingerprint);
        said.set(Step::Recorded);
        Some(next)
    });
    match (written, said.get()) {
        (Some(_), _) => Step::Recorded,
        // The last attempt decided; a write that never went through is no record.
        (None, Step::Recorded) => Step::Refused,
        (None, other) => other,
    }
}

/// A record's header: its slot (a slot number that does not fit fails closed).
fn header_of(slot: u64) -> Option<Vec<u8>> {
    Some(u32::try_from(slot).ok()?.to_be_bytes().to_vec())
}

/// The keyed hash of a proof's id: its slot, first record and fingerprint.
fn place(salt: &[u8], proof: &ProofUse, slot_s: u64) -> Place {
    let hash = jwks::sha256(&[salt, &proof.id[..]].concat());
    let (fingerprint, rest) = hash.split_at_checked(ENTRY).unwrap_or_default();
    Place {
        slot: proof.until_s / slot_s.max(1),
        bucket: u64_at(rest) % BUCKETS,
        fingerprint: fingerprint.try_into().unwrap_or_default(),
    }
}

/// The salt in shared data (16 bytes), drawn by whichever worker needs it first.
fn shared_salt(data: &dyn SharedData) -> Option<Vec<u8>> {
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

fn u64_at(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .fold(0, |n, &b| (n << 8) | u64::from(b))
}

#[cfg(test)]
mod tests;
