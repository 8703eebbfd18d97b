//! The verified-token cache (one per worker): a token whose signature was checked once is
//! not parsed or verified again while it lives. Only the signature and format stages are
//! skipped: time checks and route authorization run on every request, and a hit counts
//! only while the key that verified it is still in the key set.

use crate::config::ProviderId;
use crate::jose::alg::Algorithm;
use crate::jose::jwks::Material;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;

/// What a successful verification established about a token.
#[derive(Debug, Clone)]
pub struct Verified {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub claims: Map<String, Value>,
    /// The key that verified it: a hit is valid only while the set still selects it.
    pub key: Rc<Material>,
    /// When the entry goes (unix seconds): `exp` plus the clock skew. The claims are still
    /// checked on every hit; this only bounds how long the entry is worth keeping.
    pub evict_at: f64,
}

/// A bounded map from the whole token to its verification (and the provider that did it).
/// An entry is found by a hash of the token's last `HASHED_BYTES` bytes (the signature's,
/// unpredictable for any token that was ever verified, so hashing the rest adds nothing) and
/// accepted only when the whole token is equal. A token crafted to share a cached token's
/// tail costs one comparison, like a hit. When full, the least recently used entry goes:
/// `order` keeps the entries by last use, so eviction is a logarithmic step, not a scan.
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    hasher: RandomState,
    /// By the hash of the token's tail.
    entries: HashMap<u64, Entry>,
    /// Last-use stamp -> the entry's hash, for eviction (each entry once, under `used`).
    order: BTreeMap<u64, u64>,
    clock: u64,
    pub hits: u64,
    pub misses: u64,
}

/// How many bytes at the end of a token its hash covers.
const HASHED_BYTES: usize = 32;

#[derive(Debug)]
struct Entry {
    token: Box<str>,
    provider: ProviderId,
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

    fn hash(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        self.hasher
            .hash_one(bytes.get(bytes.len().saturating_sub(HASHED_BYTES)..))
    }

    /// The cached verification of `token` for `provider`, if it has not expired at `now`.
    pub fn get(&mut self, provider: ProviderId, token: &str, now: u64) -> Option<Rc<Verified>> {
        let hash = self.hash(token);
        let entry = self.entries.get_mut(&hash)?;
        if !same(&entry.token, token) {
            return None;
        }
        if entry.verified.evict_at <= now as f64 {
            self.remove(token);
            return None;
        }
        if entry.provider != provider {
            return None;
        }
        self.clock += 1;
        self.order.remove(&entry.used);
        entry.used = self.clock;
        self.order.insert(self.clock, hash);
        Some(Rc::clone(&entry.verified))
    }

    /// Caches `token`'s verification; it replaces any entry whose tail hashes the same.
    pub fn insert(&mut self, provider: ProviderId, token: &str, verified: Rc<Verified>) {
        if self.capacity == 0 {
            return;
        }
        let hash = self.hash(token);
        if let Some(old) = self.entries.remove(&hash) {
            self.order.remove(&old.used);
        }
        if self.entries.len() >= self.capacity
            && let Some((_, oldest)) = self.order.pop_first()
        {
            self.entries.remove(&oldest);
        }
        self.clock += 1;
        self.order.insert(self.clock, hash);
        let entry = Entry {
            token: token.into(),
            provider,
            verified,
            used: self.clock,
        };
        self.entries.insert(hash, entry);
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

    /// Forgets `token`'s entry (its key left the key set, or it expired).
    pub fn remove(&mut self, token: &str) {
        let hash = self.hash(token);
        if self
            .entries
            .get(&hash)
            .is_some_and(|e| same(&e.token, token))
            && let Some(entry) = self.entries.remove(&hash)
        {
            self.order.remove(&entry.used);
        }
    }
}

/// Whole-token equality, eight bytes at a time (wasm's `memcmp` goes byte by byte).
fn same(a: &str, b: &str) -> bool {
    let ((a_words, a_rest), (b_words, b_rest)) =
        (a.as_bytes().as_chunks::<8>(), b.as_bytes().as_chunks::<8>());
    a.len() == b.len()
        && a_rest == b_rest
        && a_words
            .iter()
            .zip(b_words)
            .all(|(x, y)| u64::from_ne_bytes(*x) == u64::from_ne_bytes(*y))
}

#[cfg(test)]
impl TokenCache {
    pub fn len(&self) -> usize {
        assert_eq!(
            self.entries.len(),
            self.order.len(),
            "the two indexes agree"
        );
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::string_slice, reason = "test code")]
mod tests {
    use super::*;

    fn verified(evict_at: f64) -> Rc<Verified> {
        Rc::new(Verified {
            alg: Algorithm::RS256,
            kid: None,
            typ: None,
            claims: Map::new(),
            key: Rc::new(Material::Oct(vec![])),
            evict_at,
        })
    }

    #[test]
    fn hits_need_the_same_provider_and_the_whole_token() {
        let mut c = TokenCache::new(10);
        c.insert(ProviderId(0), "a.b.c", verified(100.0));
        assert!(c.get(ProviderId(0), "a.b.c", 10).is_some());
        assert!(c.get(ProviderId(1), "a.b.c", 10).is_none());
        assert!(c.get(ProviderId(0), "a.b.cd", 10).is_none());
        assert!(c.get(ProviderId(0), "a.b.", 10).is_none());
    }

    #[test]
    fn tokens_sharing_the_hashed_tail_never_share_an_entry() {
        let tail = "s".repeat(HASHED_BYTES);
        let (a, b) = (format!("a.x.{tail}"), format!("b.y.{tail}"));
        let mut c = TokenCache::new(10);
        c.insert(ProviderId(0), &a, verified(100.0));
        assert!(c.get(ProviderId(0), &b, 10).is_none());
        c.remove(&b);
        assert!(
            c.get(ProviderId(0), &a, 10).is_some(),
            "removing another token kept this one"
        );
        c.insert(ProviderId(0), &b, verified(100.0));
        assert!(c.get(ProviderId(0), &b, 10).is_some());
        assert!(c.get(ProviderId(0), &a, 10).is_none());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn equality_is_over_every_byte() {
        let token = "abcdefghijklmnopqrstuvwxyz0123456789-_.";
        for i in 0..token.len() {
            let mut other = token.as_bytes().to_vec();
            other[i] ^= 1;
            assert!(!same(token, std::str::from_utf8(&other).unwrap()), "{i}");
            assert!(!same(token, &token[..i]), "{i}");
        }
        assert!(same(token, &String::from(token)));
    }

    #[test]
    fn expired_entries_go() {
        let mut c = TokenCache::new(10);
        c.insert(ProviderId(0), "t", verified(100.0));
        assert!(c.get(ProviderId(0), "t", 99).is_some());
        assert!(c.get(ProviderId(0), "t", 100).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_with_least_recently_used_eviction() {
        let mut c = TokenCache::new(3);
        for t in ["a", "b", "c"] {
            c.insert(ProviderId(0), t, verified(1e9));
        }
        assert!(c.get(ProviderId(0), "a", 0).is_some()); // "b" is now the oldest
        c.insert(ProviderId(0), "d", verified(1e9));
        assert_eq!(c.len(), 3);
        assert!(c.get(ProviderId(0), "b", 0).is_none());
        assert!(
            c.get(ProviderId(0), "a", 0).is_some()
                && c.get(ProviderId(0), "c", 0).is_some()
                && c.get(ProviderId(0), "d", 0).is_some()
        );
    }

    #[test]
    fn the_least_recently_used_goes_under_any_sequence() {
        // A model: a list in last-use order, bounded at 5.
        let (mut c, mut model) = (TokenCache::new(5), Vec::<String>::new());
        let mut x = 7u64;
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let token = format!("t{}", (x >> 33) % 9);
            match (x >> 20) % 3 {
                0 => {
                    c.insert(ProviderId(0), &token, verified(1e9));
                    model.retain(|t| *t != token);
                    if model.len() == 5 {
                        model.remove(0);
                    }
                    model.push(token);
                }
                1 => {
                    let hit = c.get(ProviderId(0), &token, 0).is_some();
                    assert_eq!(hit, model.contains(&token));
                    if hit {
                        model.retain(|t| *t != token);
                        model.push(token);
                    }
                }
                _ => {
                    c.remove(&token);
                    model.retain(|t| *t != token);
                }
            }
            assert_eq!(c.len(), model.len());
        }
    }

    #[test]
    fn size_zero_disables_the_cache() {
        let mut c = TokenCache::new(0);
        c.insert(ProviderId(0), "t", verified(1e9));
        assert!(c.get(ProviderId(0), "t", 0).is_none());
        assert!(c.is_empty());
    }
}
