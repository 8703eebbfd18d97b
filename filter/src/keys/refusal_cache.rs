//! The refused-token cache (one per worker): a token refused for a reason that cannot
//! change while the worker lives is not decoded and parsed again when it comes back. A
//! client (or a flood) repeating an expired or malformed token then costs what a verified
//! token's cache hit costs, not a parse each time.
//!
//! Only refusals that depend on nothing but the token's bytes, the provider's configuration
//! and a clock that only moves forward are kept: the format (base64url, JSON, the JWS
//! header), an algorithm the provider does not take, the issuer (or a tenant that is not
//! allowed), and expiry. Nothing that depends on key sets (an unknown `kid`, a signature
//! that fails: keys rotate), revocation lists or introspection answers is ever kept.
//!
//! A fixed table of `SLOTS` slots, one per hash, each overwritten by the next refusal that
//! lands on it: no allocation but the refusal's own, no eviction order to maintain, and a
//! flood of distinct tokens only overwrites slots (what a repeated token then costs is a
//! parse again, as without the cache). A slot is found by a 64-bit hash of the whole token
//! keyed at random per worker, and holds that hash, the token's length and the provider: a
//! token that is not the refused one matches only by a keyed-hash collision, which nobody
//! can aim for without the key, and would at worst be refused (never accepted).

use crate::config::ProviderId;
use crate::policy::response::Failure;
use std::hash::{BuildHasher, RandomState};

/// How many refusals a worker keeps (a power of two: the slot is the hash's low bits).
pub const SLOTS: usize = 1024;

#[derive(Debug)]
pub struct RefusalCache {
    hasher: RandomState,
    slots: Vec<Option<Slot>>,
    #[cfg(test)]
    pub hits: u64,
}

#[derive(Debug)]
struct Slot {
    hash: u64,
    len: usize,
    provider: ProviderId,
    failure: Failure,
}

impl Default for RefusalCache {
    fn default() -> Self {
        RefusalCache {
            hasher: RandomState::new(),
            slots: std::iter::repeat_with(|| None).take(SLOTS).collect(),
            #[cfg(test)]
            hits: 0,
        }
    }
}

impl RefusalCache {
    fn place(&self, token: &str) -> (u64, usize) {
        let hash = self.hasher.hash_one(token.as_bytes());
        // The low bits pick the slot: `SLOTS` is a power of two.
        (hash, (hash as usize) & (SLOTS - 1))
    }

    /// How `provider` refused `token` before, if it did for a lasting reason.
    pub fn get(&mut self, provider: ProviderId, token: &str) -> Option<Failure> {
        let (hash, at) = self.place(token);
        let slot = self.slots.get(at)?.as_ref()?;
        if slot.hash != hash || slot.len != token.len() || slot.provider != provider {
            return None;
        }
        #[cfg(test)]
        {
            self.hits += 1;
        }
        Some(slot.failure.clone())
    }

    /// Keeps `provider`'s refusal of `token` (the caller keeps only lasting reasons).
    pub fn insert(&mut self, provider: ProviderId, token: &str, failure: &Failure) {
        let (hash, at) = self.place(token);
        if let Some(slot) = self.slots.get_mut(at) {
            *slot = Some(Slot {
                hash,
                len: token.len(),
                provider,
                failure: failure.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::response::invalid_token;

    #[test]
    fn a_refusal_is_found_only_for_the_same_token_and_provider() {
        let mut c = RefusalCache::default();
        let refused = invalid_token("Invalid Compact JWS");
        c.insert(ProviderId(0), "a.b", &refused);
        assert_eq!(c.get(ProviderId(0), "a.b"), Some(refused));
        assert_eq!(c.get(ProviderId(1), "a.b"), None);
        assert_eq!(c.get(ProviderId(0), "a.b."), None);
        assert_eq!(c.get(ProviderId(0), "a.c"), None);
        assert_eq!(c.hits, 1);
    }

    #[test]
    fn a_flood_of_distinct_refusals_stays_within_the_slots() {
        let mut c = RefusalCache::default();
        let refused = invalid_token("Invalid Compact JWS");
        for i in 0..SLOTS * 4 {
            c.insert(ProviderId(0), &format!("t{i}"), &refused);
        }
        assert_eq!(c.slots.len(), SLOTS);
        // The last token is always kept: a later one can only overwrite it.
        let last = format!("t{}", SLOTS * 4 - 1);
        assert!(c.get(ProviderId(0), &last).is_some());
    }
}
