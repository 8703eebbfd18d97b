//! The fleet-wide DPoP replay store on etcd (v3.4 and later), through etcd's HTTP/JSON
//! gateway (`/v3/kv/txn`, `/v3/lease/grant` on its client URLs): what is sent and how the
//! answers read. The worker (`decision/worker/replay_store.rs`) makes the calls and holds
//! the requests that wait for them.
//!
//! A proof's key is `prefix` and 16 bytes of its id in hex: the id hashes the proof
//! key's thumbprint, `iat` and `jti`, so every gateway derives the same key from the same
//! proof and nothing of the proof can be read back from it. It is written by one
//! transaction that creates it only if it does not exist (`create_revision` 0): succeeded,
//! the proof is new to the whole fleet; not, it was used before, on some gateway.
//!
//! Keys live as long as their proof's window, through leases: one lease per `LEASE_SLOT_S`
//! of window ends (not one per proof: a grant is a raft write of its own), granted by the
//! first request that needs it or ahead of time on a tick, for long enough that it outlives
//! every window ending in its slot, and shared by all workers through shared data. etcd
//! never expires a lease before its TTL (a new leader extends them), so a key lives at least
//! as long as its proof could pass. Slots are short because etcd deletes a lease's keys in
//! one step that holds up its other writes: the keys of a 60 s slot (18,000 at 300 proofs
//! per second) stalled a loaded three-member cluster for up to 2.2 s in `make soak-dpop`,
//! past the requests' timeout; a 5 s slot's are a twelfth of that.

use crate::keys::shared::{SharedData, update_bytes};
use crate::policy::dpop::{EtcdStore, ProofUse};
use serde_json::Value;

/// Window ends that share a lease, in seconds.
pub const LEASE_SLOT_S: u64 = 5;
/// How much longer than its slot a lease is granted for: the time from its grant to the
/// first key written under it, and clocks that differ.
const LEASE_MARGIN_S: u64 = 30;
/// How soon before a lease is first needed a tick grants it.
pub const LEASE_AHEAD_S: u64 = 20;
pub const TXN_PATH: &str = "/v3/kv/txn";
pub const GRANT_PATH: &str = "/v3/lease/grant";
/// The largest answer read (etcd's are a few hundred bytes).
pub const MAX_ANSWER_BYTES: usize = 4096;
/// Lease records per etcd namespace in shared data, reused in turn: more than the slots a
/// window of 3,901 s (the longest) spans, 781.
const LEASE_RING: u64 = 1024;

/// A proof's key in etcd: the prefix and 16 bytes of its id in hex.
pub fn key(store: &EtcdStore, proof: &ProofUse) -> String {
    let mut key = store.prefix.clone();
    for b in proof.id.iter().take(16) {
        key.push(char::from(
            HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'),
        ));
        key.push(char::from(
            HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0'),
        ));
    }
    key
}

const HEX: &[u8; 16] = b"0123456789abcdef";
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64, padded: how etcd's gateway reads bytes fields.
fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            let digit = BASE64
                .get((n >> (18 - 6 * i) & 63) as usize)
                .copied()
                .unwrap_or(b'=');
            out.push(if i <= chunk.len() {
                char::from(digit)
            } else {
                '='
            });
        }
    }
    out
}

/// The lease slot of a proof whose window closes at `until_s`.
pub fn lease_slot(until_s: u64) -> u64 {
    until_s / LEASE_SLOT_S
}

/// How long (seconds) a lease granted at `now_s` for `slot` must live.
pub fn lease_ttl_s(slot: u64, now_s: u64) -> u64 {
    (slot + 1)
        .saturating_mul(LEASE_SLOT_S)
        .saturating_sub(now_s)
        .saturating_add(LEASE_MARGIN_S)
}

/// The body of a lease grant.
pub fn grant_body(ttl_s: u64) -> String {
    format!(r#"{{"TTL":"{ttl_s}"}}"#)
}

/// The body of the transaction that creates `key` under `lease` unless it exists.
pub fn txn_body(key: &str, lease: u64) -> String {
    let key = base64(key.as_bytes());
    format!(
        r#"{{"compare":[{{"key":"{key}","target":"CREATE","create_revision":"0"}}],"success":[{{"request_put":{{"key":"{key}","lease":"{lease}"}}}}]}}"#
    )
}

/// What a transaction's answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Txn {
    /// The key was created: the proof is new to the fleet.
    Created,
    /// The key exists: the proof was used before.
    Exists,
    /// etcd no longer has the lease (it expired, or etcd lost it): grant another.
    LeaseGone,
    /// No answer, or not one of those: etcd is unreachable, has no quorum, or failed.
    Failed(&'static str),
}

/// Reads the answer to a transaction (`status` `None`: the call failed).
pub fn read_txn(status: Option<u16>, body: &[u8]) -> Txn {
    let Some(status) = status else {
        return Txn::Failed("no answer");
    };
    let Some(answer) = object(body) else {
        return Txn::Failed("an answer that is not etcd's");
    };
    match status {
        // etcd's gateway leaves out fields at their default: `succeeded` false is absent.
        200 if answer.get("header").is_some_and(Value::is_object) => {
            match answer.get("succeeded") {
                Some(Value::Bool(true)) => Txn::Created,
                None | Some(Value::Bool(false)) => Txn::Exists,
                Some(_) => Txn::Failed("an answer that is not etcd's"),
            }
        }
        200 => Txn::Failed("an answer that is not etcd's"),
        // gRPC NOT_FOUND: "etcdserver: requested lease not found".
        404 if answer.get("code").and_then(Value::as_u64) == Some(5) => Txn::LeaseGone,
        _ => Txn::Failed("an error status"),
    }
}

/// The lease id in the answer to a grant, if it granted one.
pub fn read_grant(status: Option<u16>, body: &[u8]) -> Option<u64> {
    if status != Some(200) {
        return None;
    }
    let answer = object(body)?;
    if answer.get("error").is_some() {
        return None;
    }
    // int64 fields come as JSON strings from the gateway.
    let id = match answer.get("ID")? {
        Value::String(s) => s.parse::<u64>().ok()?,
        Value::Number(n) => n.as_u64()?,
        _ => return None,
    };
    (id != 0).then_some(id)
}

fn object(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    crate::jose::json::parse_object(body).ok()
}

/// The shared-data key of `store`'s lease for `slot`: one etcd namespace (cluster and
/// prefix) has a ring of `LEASE_RING` of them, whichever providers use it.
pub fn lease_key(store: &EtcdStore, slot: u64) -> String {
    format!(
        "jwt_filter.etcd.{}.{}.{}",
        store.cluster,
        store.prefix,
        slot % LEASE_RING
    )
}

/// The lease a record under a `lease_key` holds for `slot`: big-endian slot and id.
fn lease_in(record: &[u8], slot: u64) -> Option<u64> {
    let (s, id) = record.split_at_checked(8)?;
    let id = u64::from_be_bytes(id.try_into().ok()?);
    (u64::from_be_bytes(s.try_into().ok()?) == slot).then_some(id)
}

/// The lease of `slot` the workers recorded under `key`.
pub fn shared_lease(data: &dyn SharedData, key: &str, slot: u64) -> Option<u64> {
    lease_in(&data.get(key)?.0, slot)
}

/// Records `id` as the lease of `slot` under `key`, unless another worker recorded one
/// (it stays); a lease `gone` (etcd no longer has it) is replaced, by none when `id` is 0.
pub fn remember_lease(data: &dyn SharedData, key: &str, slot: u64, id: u64, gone: u64) {
    update_bytes(data, key, &[], |record| {
        if lease_in(record, slot).is_some_and(|other| other != gone) {
            return None;
        }
        Some(match id {
            0 => Vec::new(),
            _ => [slot.to_be_bytes(), id.to_be_bytes()].concat(),
        })
    });
}

#[cfg(test)]
mod tests;
