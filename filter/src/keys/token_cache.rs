//! The verified-token cache (one per worker): a token whose signature was checked once is
//! not parsed or verified again while it lives. Only the signature and format stages are
//! skipped: time checks and route authorization run on every request, and a hit counts
//! only while the key that verified it is still in the key set.

use crate::config::ProviderId;
use crate::jose::alg::Algorithm;
use crate::jose::jwks::Material;
use serde_json::{Map, Value};
use std::collections::HashMap;
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
/// tail costs one comparison, like a hit.
///
/// When full, an entry not used since the last sweep goes (the CLOCK algorithm, a "second
/// chance" approximation of least recently used): a hit only sets its entry's `used` bit,
/// where keeping an exact last-use order cost an ordered map's removal and insertion on
/// every hit; an insertion into a full cache sweeps `hand` round the slots, clearing bits,
/// to the first entry whose bit is clear (at most one turn: after it every bit is clear).
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    hasher: RandomState,
    /// By the hash of the token's tail: the entry's slot.
    index: HashMap<u64, usize>,
    /// At most `capacity` slots.
    slots: Vec<Option<Entry>>,
    /// The empty slots (their entries were removed), taken before any entry is evicted.
    free: Vec<usize>,
    hand: usize,
    pub hits: u64,
    pub misses: u64,
}

/// How many bytes at the end of a token its hash covers.
const HASHED_BYTES: usize = 32;

#[derive(Debug)]
struct Entry {
    hash: u64,
    token: Box<str>,
    provider: ProviderId,
    verified: Rc<Verified>,
    /// Used since the sweep last passed.
    used: bool,
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

    /// The slot of `token`'s entry, when the whole token is equal.
    fn find(&self, token: &str) -> Option<usize> {
        let at = *self.index.get(&self.hash(token))?;
        let entry = self.slots.get(at)?.as_ref()?;
        same(&entry.token, token).then_some(at)
    }

    /// The cached verification of `token` for `provider`, if it has not expired at `now`.
    pub fn get(&mut self, provider: ProviderId, token: &str, now: u64) -> Option<Rc<Verified>> {
        let at = self.find(token)?;
        let entry = self.slots.get_mut(at)?.as_mut()?;
        if entry.verified.evict_at <= now as f64 {
            self.empty(at);
            return None;
        }
        if entry.provider != provider {
            return None;
        }
        entry.used = true;
        Some(Rc::clone(&entry.verified))
    }

    /// Caches `token`'s verification; it replaces any entry whose tail hashes the same.
    pub fn insert(&mut self, provider: ProviderId, token: &str, verified: Rc<Verified>) {
        if self.capacity == 0 {
            return;
        }
        let hash = self.hash(token);
        let entry = Entry {
            hash,
            token: token.into(),
            provider,
            verified,
            used: false,
        };
        let at = match self.index.get(&hash) {
            Some(&at) => at,
            None if let Some(at) = self.free.pop() => at,
            None if self.slots.len() < self.capacity => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => self.victim(),
        };
        if let Some(slot) = self.slots.get_mut(at) {
            if let Some(old) = slot.replace(entry) {
                self.index.remove(&old.hash);
            }
            self.index.insert(hash, at);
        }
    }

    /// The slot the next entry takes in a full cache: the first, from `hand`, that is empty
    /// or whose entry was not used since the sweep last passed (whose bit it clears).
    fn victim(&mut self) -> usize {
        let n = self.slots.len();
        for _ in 0..=n {
            let at = self.hand;
            self.hand = (self.hand + 1) % n.max(1);
            match self.slots.get_mut(at) {
                Some(Some(entry)) if entry.used => entry.used = false,
                _ => return at,
            }
        }
        // Unreachable (a turn clears every bit); any slot keeps the bound.
        self.hand
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
        if let Some(at) = self.find(token) {
            self.empty(at);
        }
    }

    /// Empties slot `at` (found by `find`) and makes it free.
    fn empty(&mut self, at: usize) {
        if let Some(Some(entry)) = self.slots.get_mut(at).map(Option::take) {
            self.index.remove(&entry.hash);
            self.free.push(at);
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
        let kept = self.slots.iter().flatten().count();
        assert_eq!(self.index.len(), kept, "the index and the slots agree");
        assert!(self.slots.len() <= self.capacity);
        assert_eq!(
            self.slots.len() - kept,
            self.free.len(),
            "every empty slot is free"
        );
        kept
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    fn bounded_with_second_chance_eviction() {
        let mut c = TokenCache::new(3);
        for t in ["a", "b", "c"] {
            c.insert(ProviderId(0), t, verified(1e9));
        }
        assert!(c.get(ProviderId(0), "a", 0).is_some()); // "a" gets a second chance
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
    fn a_token_in_use_outlives_a_flood_of_tokens_seen_once() {
        let mut c = TokenCache::new(4);
        c.insert(ProviderId(0), "hot", verified(1e9));
        for i in 0..100 {
            assert!(c.get(ProviderId(0), "hot", 0).is_some(), "{i}");
            c.insert(ProviderId(0), &format!("once{i}"), verified(1e9));
            assert_eq!(c.len(), 4.min(i + 2));
        }
    }

    #[test]
    fn bounded_and_exact_under_any_sequence() {
        // A model of what is kept: an insertion into a full cache evicts exactly one other
        // entry, and nothing else ever goes unless removed or expired.
        let (mut c, mut model) = (TokenCache::new(5), Vec::<String>::new());
        let mut x = 7u64;
        for _ in 0..4000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let token = format!("t{}", (x >> 33) % 9);
            match (x >> 20) % 3 {
                0 => {
                    c.insert(ProviderId(0), &token, verified(1e9));
                    if !model.contains(&token) {
                        if model.len() == 5 {
                            let kept: Vec<String> = model
                                .iter()
                                .filter(|t| c.find(t).is_some())
                                .cloned()
                                .collect();
                            assert_eq!(kept.len(), 4, "one entry evicted");
                            model = kept;
                        }
                        model.push(token.clone());
                    }
                    assert!(c.get(ProviderId(0), &token, 0).is_some());
                }
                1 => {
                    let hit = c.get(ProviderId(0), &token, 0).is_some();
                    assert_eq!(hit, model.contains(&token));
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
