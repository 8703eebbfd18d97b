//! The host's shared data (one copy per VM id, visible to every worker) and the
//! compare-and-swap protocol every write to it follows (key-cache records, the DPoP replay
//! cache, the worker counter).
//!
//! The host's shared data (proxy-wasm-cpp-host) behaves like this: a read returns the value
//! and its CAS (never 0); a write with CAS 0 always succeeds; a write to a key that does not
//! exist succeeds whatever its CAS; a write with another CAS than the current one fails.
//! The host may also drop every key (when the last VM of the VM id goes away). So:
//!
//! - nothing is ever written with CAS 0: a missing record is created with a CAS no record
//!   can have (`ABSENT_ONLY`, so the write fails if someone created it first) and re-read;
//! - every change is read, transform, CAS-write, retried from a fresh read on a mismatch;
//! - the fetch lease names its holder, so success, failure and release only touch the lease
//!   they own, and the keys record's version only ever goes up.
//!
//! What a CAS cannot prevent, so two fetches can run at once: a holder stalled between its
//! claim and its call for longer than the lease (`2 x timeout_ms + 1 s`), and a wipe while a
//! lease is held (proxy-wasm-cpp-host wipes a VM id's data only when its last VM goes, so
//! never while the holder lives). Either way the last fetch to finish gives the keys.

use crate::jose::json;
use serde::Serialize;
use serde_json::Value;

/// The host's shared data.
pub trait SharedData {
    /// The value under `key` and its CAS, or `None` if there is none.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` under `key` if its CAS is still `cas` (see the module comment).
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError>;
}

/// A record kept in shared data: written as JSON by serde, read back field by field (serde's
/// typed deserialization would add some 36 KB to the module for these few fields).
pub trait Record: Serialize + Sized {
    /// The record `value` holds; `None` if it is not one (another version's, say).
    fn from_json(value: &Value) -> Option<Self>;

    fn decode(bytes: &[u8]) -> Option<Self> {
        Self::from_json(&json::parse(bytes).ok()?)
    }
}

impl Record for u64 {
    fn from_json(value: &Value) -> Option<Self> {
        value.as_u64()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// Someone wrote the key since it was read.
    CasMismatch,
    /// The host refused the write for another reason.
    Refused,
}

/// A CAS the host hands out only after 2^32 - 1 writes: writing with it creates a key that
/// does not exist and fails on one that does.
pub(crate) const ABSENT_ONLY: u32 = u32::MAX;

/// Attempts of one read-modify-write before giving up (each failed attempt means another
/// worker made progress).
const MAX_ATTEMPTS: usize = 16;

/// A number no other live worker of this VM id holds, from a shared counter.
pub fn worker_number(data: &dyn SharedData) -> Option<u64> {
    update(data, "jwt_filter.workers", |n: &u64| {
        Some(n.wrapping_add(1))
    })
}

/// Reads, transforms and CAS-writes the record under `key` until the write goes through
/// (`Some(written)`), `change` declines (`None`), or the attempts run out (`None`). A key
/// that does not exist is created first, empty, so that the write that follows is a real
/// compare-and-swap; one that does not parse (another version's) counts as empty.
pub(crate) fn update<T, F>(data: &dyn SharedData, key: &str, mut change: F) -> Option<T>
where
    T: Record + Default,
    F: FnMut(&T) -> Option<T>,
{
    let empty = serde_json::to_vec(&T::default()).ok()?;
    let mut written = None;
    update_bytes(data, key, &empty, |bytes| {
        let current = T::decode(bytes).unwrap_or_default();
        let next = change(&current)?;
        let bytes = serde_json::to_vec(&next).ok()?;
        written = Some(next);
        Some(bytes)
    })?;
    written
}

/// `update` on the record's bytes; a missing record is created as `empty` first.
pub(crate) fn update_bytes(
    data: &dyn SharedData,
    key: &str,
    empty: &[u8],
    mut change: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    for _ in 0..MAX_ATTEMPTS {
        let Some((bytes, cas)) = data.get(key) else {
            if data.set(key, empty, ABSENT_ONLY) == Err(SetError::Refused) {
                return None;
            }
            continue;
        };
        let next = change(&bytes)?;
        match data.set(key, &next, cas) {
            Ok(()) => return Some(next),
            Err(SetError::CasMismatch) => continue,
            Err(SetError::Refused) => return None,
        }
    }
    None
}

/// The record under `key` and its CAS; `None` when missing or unreadable.
pub(crate) fn read<T: Record>(data: &dyn SharedData, key: &str) -> Option<(T, u32)> {
    let (bytes, cas) = data.get(key)?;
    Some((T::decode(&bytes)?, cas))
}
