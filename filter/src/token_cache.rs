//! The verified-token cache (one per worker): a token whose signature was checked once is
//! not parsed or verified again while it lives. Only the signature and format stages are
//! skipped: time checks and route authorization run on every request, and a hit counts
//! only while the key that verified it is still in the key set.

use crate::jwks::Material;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::rc::Rc;

/// What a successful verification established about a token.
#[derive(Debug, Clone)]
pub struct Verified {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub claims: Map<String, Value>,
    /// The key that verified it: a hit is valid only while the set still selects it.
    pub key: Material,
    /// When the entry goes (unix seconds): `exp` plus the clock skew. The claims are still
    /// checked on every hit; this only bounds how long the entry is worth keeping.
    pub evict_at: f64,
}

/// A bounded map from the whole token to its verification (and the provider that did it).
/// The map hashes the token to find an entry and compares it in full to accept it. When
/// full, the least recently used entry goes (a linear scan: the miss that inserts has just
/// paid for a signature check, which costs far more).
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<String, Entry>,
    clock: u64,
    pub hits: u64,
    pub misses: u64,
}

#[derive(Debug)]
struct Entry {
    provider: usize,
    verified: Rc<Verified>,
    used: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            ..Default::default()
        }
    }

    /// The cached verification of `token` for `provider`, if it has not expired at `now`.
    pub fn get(&mut self, provider: usize, token: &str, now: u64) -> Option<Rc<Verified>> {
        if self.capacity == 0 {
            return None;
        }
        match self.entries.get_mut(token) {
            Some(e) if e.verified.evict_at <= now as f64 => {
                self.entries.remove(token);
                None
            }
            Some(e) if e.provider == provider => {
                self.clock += 1;
                e.used = self.clock;
                Some(Rc::clone(&e.verified))
            }
            _ => None,
        }
    }

    pub fn insert(&mut self, provider: usize, token: &str, verified: Rc<Verified>) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(token) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.clock += 1;
        let entry = Entry {
            provider,
            verified,
            used: self.clock,
        };
        self.entries.insert(token.to_string(), entry);
    }

    /// Counts a lookup: a hit only when the cached verification was used. Nothing is
    /// counted while the cache is off.
    pub fn count(&mut self, hit: bool) {
        match (self.capacity, hit) {
            (0, _) => {}
            (_, true) => self.hits += 1,
            (_, false) => self.misses += 1,
        }
    }

    /// Forgets an entry whose key left the key set.
    pub fn remove(&mut self, token: &str) {
        self.entries.remove(token);
    }
}

#[cfg(test)]
impl TokenCache {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(evict_at: f64) -> Rc<Verified> {
        Rc::new(Verified {
            alg: Algorithm::RS256,
            kid: None,
            typ: None,
            claims: Map::new(),
            key: Material::Oct(vec![]),
            evict_at,
        })
    }

    #[test]
    fn hits_need_the_same_provider_and_the_whole_token() {
        let mut c = TokenCache::new(10);
        c.insert(0, "a.b.c", verified(100.0));
        assert!(c.get(0, "a.b.c", 10).is_some());
        assert!(c.get(1, "a.b.c", 10).is_none());
        assert!(c.get(0, "a.b.cd", 10).is_none());
        assert!(c.get(0, "a.b.", 10).is_none());
    }

    #[test]
    fn expired_entries_go() {
        let mut c = TokenCache::new(10);
        c.insert(0, "t", verified(100.0));
        assert!(c.get(0, "t", 99).is_some());
        assert!(c.get(0, "t", 100).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_with_least_recently_used_eviction() {
        let mut c = TokenCache::new(3);
        for t in ["a", "b", "c"] {
            c.insert(0, t, verified(1e9));
        }
        assert!(c.get(0, "a", 0).is_some()); // "b" is now the oldest
        c.insert(0, "d", verified(1e9));
        assert_eq!(c.len(), 3);
        assert!(c.get(0, "b", 0).is_none());
        assert!(
            c.get(0, "a", 0).is_some() && c.get(0, "c", 0).is_some() && c.get(0, "d", 0).is_some()
        );
    }

    #[test]
    fn size_zero_disables_the_cache() {
        let mut c = TokenCache::new(0);
        c.insert(0, "t", verified(1e9));
        assert!(c.get(0, "t", 0).is_none());
        assert!(c.is_empty());
    }
}
