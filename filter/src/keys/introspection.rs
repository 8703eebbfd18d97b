//! Introspection answers (RFC 7662) shared by all workers: one record per slot of a
//! provider's table in shared data, found by a keyed hash of the token (HMAC-SHA-256 under
//! a random salt that the VM id's workers share), never by the token itself. A record is an
//! answer (active with its claims, or inactive), a failure (briefly), or a pending marker
//! that makes the worker holding it the only one to call the endpoint for that token.
//!
//! Record: `<state> <hash> <until_ms>\n<answer>`, state `a` (active: the answer follows),
//! `i` (inactive), `f` (the call failed), `p` (a call is pending until `until_ms`). A slot
//! holds one token's record; another token whose hash falls in the same slot replaces it
//! (a miss, never a wrong answer: the whole hash is compared).

use super::shared::{ABSENT_ONLY, SharedData, update_bytes};
use crate::config::form_encode;
use crate::jose::json;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};

/// Slots of one provider's table: at most this many answers are kept per provider, each
/// at most its `max_body_bytes`.
pub const SLOTS: u32 = 4096;

/// How long a failed call's record makes others answer 503 without calling, and the
/// `Retry-After` of that answer.
pub const FAILURE_HOLD_S: u64 = 1;

const SALT_KEY: &str = "jwt_filter.introspection.salt";

/// What the cache holds for a token now.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Active: the answer's members, to be checked as claims.
    Active(Map<String, Value>),
    Inactive,
    /// The endpoint failed for this token moments ago (or shared data is unusable).
    Failed,
    /// Nothing usable: call (or wait for the call that is pending).
    Missing,
}

/// A token's place in the cache: its hash and its slot's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub hash: String,
    pub key: String,
}

impl Entry {
    /// The entry of `token` for provider `provider` under `salt`.
    pub fn new(salt: &[u8], provider: &str, token: &str) -> Entry {
        let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
        let mut context = hmac::Context::with_key(&key);
        context.update(provider.as_bytes());
        context.update(b"\0");
        context.update(token.as_bytes());
        let tag = context.sign();
        let bytes = tag.as_ref();
        let mut hash = String::with_capacity(32);
        for b in bytes.iter().take(16) {
            hash.push_str(&format!("{b:02x}"));
        }
        let slot = bytes
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_be_bytes)
            % SLOTS;
        Entry {
            key: format!("jwt_filter.introspection.{provider}.{slot}"),
            hash,
        }
    }
}

/// The salt all workers of the VM id share, created by the first that needs it; `None`
/// when shared data or the random source fails.
pub fn salt(data: &dyn SharedData) -> Option<Vec<u8>> {
    if let Some((bytes, _)) = data.get(SALT_KEY)
        && bytes.len() == 32
    {
        return Some(bytes);
    }
    let mut fresh = [0u8; 32];
    SystemRandom::new().fill(&mut fresh).ok()?;
    // Only if nobody made one first; then read what is there.
    let _ = data.set(SALT_KEY, &fresh, ABSENT_ONLY);
    let (bytes, _) = data.get(SALT_KEY)?;
    (bytes.len() == 32).then_some(bytes)
}

/// A record as read.
struct Record<'b> {
    state: u8,
    hash: &'b str,
    until_ms: u64,
    answer: &'b [u8],
}

fn parse(bytes: &[u8]) -> Option<Record<'_>> {
    let split = bytes.iter().position(|b| *b == b'\n')?;
    let (head, rest) = bytes.split_at_checked(split)?;
    let head = std::str::from_utf8(head).ok()?;
    let mut parts = head.split(' ');
    let (state, hash, until) = (parts.next()?, parts.next()?, parts.next()?);
    let [state] = state.as_bytes() else {
        return None;
    };
    Some(Record {
        state: *state,
        hash,
        until_ms: until.parse().ok()?,
        answer: rest.get(1..)?,
    })
}

fn record(state: u8, hash: &str, until_ms: u64, answer: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{} {hash} {until_ms}\n", char::from(state)).into_bytes();
    bytes.extend_from_slice(answer);
    bytes
}

/// What the slot of `entry` holds for it at `now_ms`.
pub fn lookup(data: &dyn SharedData, entry: &Entry, now_ms: u64) -> Lookup {
    let Some((bytes, _)) = data.get(&entry.key) else {
        return Lookup::Missing;
    };
    read(&bytes, entry, now_ms)
}

fn read(bytes: &[u8], entry: &Entry, now_ms: u64) -> Lookup {
    match parse(bytes) {
        Some(r) if r.hash == entry.hash && now_ms < r.until_ms => match r.state {
            b'a' => json::parse_object(r.answer).map_or(Lookup::Failed, Lookup::Active),
            b'i' => Lookup::Inactive,
            b'f' => Lookup::Failed,
            _ => Lookup::Missing,
        },
        _ => Lookup::Missing,
    }
}

/// Whether this worker may call for `entry`.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// The pending marker is ours until `now_ms + lease_ms`: call.
    Claimed,
    /// Another call is pending: wait for its answer.
    Pending,
    /// An answer is there already (it came since the lookup).
    Answered,
    /// Shared data refused: fail closed.
    Unavailable,
}

/// Writes the pending marker for `entry` unless a live record for the same token is there.
pub fn claim(data: &dyn SharedData, entry: &Entry, now_ms: u64, lease_ms: u64) -> Claim {
    let mut found = Claim::Unavailable;
    let written = update_bytes(data, &entry.key, b"", |bytes| {
        match parse(bytes) {
            Some(r) if r.hash == entry.hash && now_ms < r.until_ms => {
                found = match r.state {
                    b'p' => Claim::Pending,
                    _ => Claim::Answered,
                };
                return None;
            }
            _ => {}
        }
        Some(record(
            b'p',
            &entry.hash,
            now_ms.saturating_add(lease_ms),
            b"",
        ))
    });
    match written {
        Some(_) => Claim::Claimed,
        None => found,
    }
}

/// Records the outcome of a call for `entry` (whatever the slot held).
pub fn store(data: &dyn SharedData, entry: &Entry, outcome: &Outcome, now_ms: u64) -> bool {
    let (state, until_ms, answer): (u8, u64, &[u8]) = match outcome {
        Outcome::Active { until_ms, answer } => (b'a', *until_ms, answer),
        Outcome::Inactive { until_ms } => (b'i', *until_ms, b""),
        Outcome::Failed => (b'f', now_ms + FAILURE_HOLD_S * 1000, b""),
    };
    let bytes = record(state, &entry.hash, until_ms, answer);
    update_bytes(data, &entry.key, b"", |_| Some(bytes.clone())).is_some()
}

/// Gives back the pending marker of `entry` (its call died with its stream), so that the
/// next worker to ask calls again.
pub fn release(data: &dyn SharedData, entry: &Entry) {
    let _ = update_bytes(data, &entry.key, b"", |bytes| match parse(bytes) {
        Some(r) if r.state == b'p' && r.hash == entry.hash => Some(Vec::new()),
        _ => None,
    });
}

/// What a call came to, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Active, used until `until_ms`; `answer` is the answer's JSON.
    Active {
        until_ms: u64,
        answer: Vec<u8>,
    },
    Inactive {
        until_ms: u64,
    },
    Failed,
}

/// How long answers are kept.
#[derive(Debug, Clone, Copy)]
pub struct Ttl {
    pub active_s: u64,
    pub inactive_s: u64,
}

/// The endpoint's answer (`status` `None`: no answer), read: 200, a JSON object of at most
/// `max_bytes`, whose `active` is a boolean. An active answer is kept for `ttl.active_s`
/// and never past its `exp`; one without a usable `exp` (which its check refuses anyway)
/// only as long as an inactive one. `Err`: why it is a failure (fixed text).
pub fn accept_answer(
    status: Option<u16>,
    body: &[u8],
    max_bytes: usize,
    ttl: Ttl,
    now_ms: u64,
) -> Result<Outcome, &'static str> {
    match status {
        None => return Err("no answer"),
        Some(200) => {}
        Some(_) => return Err("status is not 200"),
    }
    if body.len() > max_bytes {
        return Err("answer larger than max_body_bytes");
    }
    let answer = json::parse_object(body).map_err(|_| "answer is not a JSON object")?;
    let inactive_until = now_ms.saturating_add(ttl.inactive_s.saturating_mul(1000));
    match answer.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            return Ok(Outcome::Inactive {
                until_ms: inactive_until,
            });
        }
        _ => return Err("'active' is not a boolean"),
    }
    let longest = now_ms.saturating_add(ttl.active_s.saturating_mul(1000));
    let until_ms = match answer.get("exp").and_then(Value::as_f64) {
        Some(exp) if exp * 1000.0 > now_ms as f64 => {
            // Whole milliseconds before `exp`: the float is within the u64 range here.
            let exp_ms = (exp * 1000.0).min(longest as f64) as u64;
            exp_ms.min(longest)
        }
        _ => inactive_until,
    };
    Ok(Outcome::Active {
        until_ms,
        answer: body.to_vec(),
    })
}

/// The form body of a call for `token` (RFC 7662 section 2.1).
pub fn request_body(token: &str) -> Vec<u8> {
    format!("token={}&token_type_hint=access_token", form_encode(token)).into_bytes()
}

#[cfg(test)]
mod tests;
