//! The remote key-set lifecycle, as pure functions of two small records that every worker
//! shares (through the host's shared data, with compare-and-swap: `shared_keys`):
//!
//! - `KeysRecord`: the last good JWKS document and when it was fetched;
//! - `FetchRecord`: the fetch lease, the last attempt (for the unknown-`kid` cooldown) and
//!   the failure count (for the retry back-off).
//!
//! A worker that needs keys takes the lease with a CAS write; the others see the lease and
//! wait for the result instead of fetching. A lease expires on its own, so a worker that
//! died mid-fetch cannot block the others. A failed fetch never replaces a good key set.

use crate::config::ProviderId;
use crate::config::{Fetch, split_uri};
use crate::jose::json;
use crate::jose::jwks::{Accept, KeySet, Loaded, Origin};
use crate::keys::introspection::Lookup;
use crate::keys::revocation::Check;
use crate::keys::shared::Record;
use serde::Serialize;
use serde_json::{Map, Value};

/// What the host side knows about a provider's remote key set.
pub enum KeyState<'k> {
    /// A key set is loaded. `refetch_allowed` says whether an unknown `kid` may trigger a
    /// fetch now (no fetch within the cooldown).
    Ready {
        set: &'k KeySet,
        refetch_allowed: bool,
    },
    /// No key set yet; a fetch is under way or can start.
    Loading,
    /// No usable key set and the last fetch failed.
    Unavailable { retry_after_s: u64 },
}

/// Key sets fetched by the host side, by provider and key source (the index of the source
/// in the provider's `keys`).
pub trait KeyStore {
    fn state(&self, provider: ProviderId, source: usize) -> KeyState<'_>;

    /// Whether a verified token of `provider` (with a `revocation`) is revoked: asked only
    /// for providers that configure one. None is, by default.
    fn revocation(&self, provider: ProviderId, claims: &Map<String, Value>) -> Check {
        let _ = (provider, claims);
        Check::Clear
    }

    /// The key set of `tenant` of a provider with `tenants` (its one remote source). A
    /// store without tenants answers with the provider's set.
    fn tenant(&self, provider: ProviderId, tenant: &str) -> KeyState<'_> {
        let _ = tenant;
        self.state(provider, 0)
    }

    /// What the introspection cache holds for `token` of introspection provider
    /// `provider` (`keys::introspection`); none by default.
    fn introspected(&self, provider: ProviderId, token: &str) -> Lookup {
        let _ = (provider, token);
        Lookup::Missing
    }
}

/// A key store that always holds one set, for every provider: for tests, benchmarks and
/// hosts whose keys never change. `refetch_allowed` answers an unknown `kid`.
pub struct FixedKeys {
    pub set: KeySet,
    pub refetch_allowed: bool,
}

impl KeyStore for FixedKeys {
    fn state(&self, _provider: ProviderId, _source: usize) -> KeyState<'_> {
        KeyState::Ready {
            set: &self.set,
            refetch_allowed: self.refetch_allowed,
        }
    }
}

/// Longest back-off between retries after failures.
const MAX_BACKOFF_MS: u64 = 60_000;
/// A lease outlives its fetch timeout by this much (two fetches for discovery + slack).
const LEASE_SLACK_MS: u64 = 1_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FetchRecord {
    /// A fetch is in flight until then (unix ms).
    pub lease_until_ms: u64,
    /// The worker holding the lease (`shared_keys::worker_number`); 0 when none does.
    pub owner: u64,
    /// When the last fetch started, successful or not.
    pub last_attempt_ms: u64,
    /// When the last fetch for an unknown `kid` started: the cooldown counts from here.
    pub last_kid_fetch_ms: u64,
    /// `fetched_at_ms` of the newest `KeysRecord`: workers re-read the keys when it moves.
    pub keys_version: u64,
    /// Consecutive failures; 0 after a success.
    pub failures: u32,
    /// No new fetch after a failure before then.
    pub retry_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeysRecord {
    pub fetched_at_ms: u64,
    /// The JWKS document exactly as served (already validated once).
    pub jwks: String,
    /// For discovery: the `jwks_uri` found, and when the discovery document was fetched.
    pub jwks_uri: Option<String>,
    pub discovered_at_ms: u64,
}

impl Record for FetchRecord {
    /// Every field, 0 when absent (a record of an older version); of another type, none.
    fn from_json(value: &Value) -> Option<Self> {
        let o = value.as_object()?;
        let n = |name: &str| o.get(name).map_or(Some(0), Value::as_u64);
        Some(FetchRecord {
            lease_until_ms: n("lease_until_ms")?,
            owner: n("owner")?,
            last_attempt_ms: n("last_attempt_ms")?,
            last_kid_fetch_ms: n("last_kid_fetch_ms")?,
            keys_version: n("keys_version")?,
            failures: u32::try_from(n("failures")?).ok()?,
            retry_at_ms: n("retry_at_ms")?,
        })
    }
}

impl Record for KeysRecord {
    /// `jwks_uri` may be absent or null; the other fields are required.
    fn from_json(value: &Value) -> Option<Self> {
        let o = value.as_object()?;
        let jwks_uri = match o.get("jwks_uri") {
            None | Some(Value::Null) => None,
            Some(uri) => Some(uri.as_str()?.to_string()),
        };
        Some(KeysRecord {
            fetched_at_ms: o.get("fetched_at_ms")?.as_u64()?,
            jwks: o.get("jwks")?.as_str()?.to_string(),
            jwks_uri,
            discovered_at_ms: o.get("discovered_at_ms")?.as_u64()?,
        })
    }
}

/// No keys record yet is `null`.
impl Record for Option<KeysRecord> {
    fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => KeysRecord::from_json(other).map(Some),
        }
    }
}

/// Why a fetch is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// No usable key set.
    NoKeys,
    /// A token names a `kid` the set does not have.
    UnknownKid,
    /// The set is getting old: refresh before it expires (from the tick).
    Refresh,
}

impl FetchRecord {
    pub fn lease_active(&self, now_ms: u64) -> bool {
        self.lease_until_ms > now_ms
    }

    /// Whether a fetch for `trigger` may start now. Unknown `kid`s are rate-limited among
    /// themselves (one fetch per cooldown), so a key rotated in just after a routine fetch
    /// is still picked up at once; and the back-off after failures does not hold them back
    /// (a key server that failed a while ago may serve a rotation now, and the stale set
    /// would keep refusing its new key and accepting the removed one until the back-off ends).
    pub fn may_start(&self, trigger: Trigger, now_ms: u64, fetch: &Fetch) -> bool {
        if self.lease_active(now_ms) {
            return false;
        }
        match trigger {
            Trigger::NoKeys | Trigger::Refresh => now_ms >= self.retry_at_ms,
            Trigger::UnknownKid => {
                self.last_kid_fetch_ms == 0
                    || now_ms.saturating_sub(self.last_kid_fetch_ms) >= fetch.cooldown_s * 1000
            }
        }
    }

    /// The record in which `owner` holds the lease for a fetch caused by `trigger`.
    pub fn leased(&self, owner: u64, trigger: Trigger, now_ms: u64, fetch: &Fetch) -> FetchRecord {
        let kid = trigger == Trigger::UnknownKid;
        FetchRecord {
            lease_until_ms: now_ms + 2 * fetch.timeout_ms + LEASE_SLACK_MS,
            owner,
            last_attempt_ms: now_ms,
            last_kid_fetch_ms: if kid { now_ms } else { self.last_kid_fetch_ms },
            ..self.clone()
        }
    }

    pub fn succeeded(&self, keys_version: u64) -> FetchRecord {
        FetchRecord {
            lease_until_ms: 0,
            owner: 0,
            keys_version,
            failures: 0,
            retry_at_ms: 0,
            ..self.clone()
        }
    }

    /// After a failure: 1 s, 2 s, 4 s, ... up to a minute before the next try.
    /// Gives the lease back without counting a failure (its holder went away).
    pub fn released(&self) -> FetchRecord {
        FetchRecord {
            lease_until_ms: 0,
            owner: 0,
            ..self.clone()
        }
    }

    pub fn failed(&self, now_ms: u64) -> FetchRecord {
        let failures = self.failures.saturating_add(1);
        let backoff = 1000u64
            .saturating_mul(1 << failures.min(16).saturating_sub(1))
            .min(MAX_BACKOFF_MS);
        FetchRecord {
            lease_until_ms: 0,
            owner: 0,
            failures,
            retry_at_ms: now_ms + backoff,
            ..self.clone()
        }
    }
}

impl KeysRecord {
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.fetched_at_ms)
    }

    /// Still servable: fresh, or stale within `stale_max_s`.
    pub fn usable(&self, now_ms: u64, fetch: &Fetch) -> bool {
        self.age_ms(now_ms) < (fetch.cache_duration_s + fetch.stale_max_s) * 1000
    }

    /// Old enough to refresh in the background: past 90% of its cache duration.
    pub fn wants_refresh(&self, now_ms: u64, fetch: &Fetch) -> bool {
        self.age_ms(now_ms) >= fetch.cache_duration_s * 900
    }

    /// Whether discovery must run again before the next JWKS fetch.
    pub fn discovery_expired(&self, now_ms: u64, fetch: &Fetch) -> bool {
        self.jwks_uri.is_none()
            || now_ms.saturating_sub(self.discovered_at_ms) >= fetch.cache_duration_s * 1000
    }
}

/// A worker's view of one provider: the parsed key set and the records it came from.
#[derive(Debug, Default)]
pub struct LocalKeys {
    pub record: Option<KeysRecord>,
    pub set: Option<KeySet>,
    pub fetch: FetchRecord,
}

impl LocalKeys {
    /// Adopts a newer keys record (parsing its JWKS once).
    /// `accept`: the source's limit and key uses, which `accept_jwks` applied to the record
    /// already.
    pub fn adopt(&mut self, record: KeysRecord, accept: Accept) {
        if self.record.as_ref() == Some(&record) {
            return;
        }
        self.set = KeySet::parse_accepting(record.jwks.as_bytes(), Origin::Remote, accept)
            .ok()
            .map(|l| l.set);
        self.record = Some(record);
    }

    /// Adopts the record of a fetch this worker just made, whose JWKS (`fetched`) it parsed
    /// into `set` when it accepted it: parsing a large set again would double the cost of
    /// the callback. A record that holds another JWKS is parsed as `adopt` does.
    pub fn adopt_fetched(
        &mut self,
        record: KeysRecord,
        fetched: &[u8],
        set: KeySet,
        accept: Accept,
    ) {
        if record.jwks.as_bytes() != fetched {
            return self.adopt(record, accept);
        }
        self.set = Some(set);
        self.record = Some(record);
    }

    /// The state the authenticator sees. An unknown `kid` may wait for a fetch while one
    /// is in flight (it may bring the key) or when the cooldown allows a new one.
    pub fn state(&self, now_ms: u64, fetch: &Fetch) -> KeyState<'_> {
        let usable = self
            .record
            .as_ref()
            .is_some_and(|r| r.usable(now_ms, fetch));
        match &self.set {
            Some(set) if usable => KeyState::Ready {
                set,
                refetch_allowed: self.fetch.lease_active(now_ms)
                    || self.fetch.may_start(Trigger::UnknownKid, now_ms, fetch),
            },
            _ if self.fetch.failures > 0
                && !self.fetch.lease_active(now_ms)
                && now_ms < self.fetch.retry_at_ms =>
            {
                KeyState::Unavailable {
                    retry_after_s: (self.fetch.retry_at_ms - now_ms).div_ceil(1000).max(1),
                }
            }
            _ => KeyState::Loading,
        }
    }
}

/// Checks a JWKS answer: a 200 with a body within bounds holding at least one usable key.
pub fn accept_jwks(status: Option<u16>, body: &[u8], fetch: &Fetch) -> Result<Loaded, String> {
    accept_status(status, body, fetch)?;
    KeySet::parse_accepting(body, Origin::Remote, fetch.accept())
}

/// Checks a discovery answer: its `issuer` must be ours exactly, and its `jwks_uri` an
/// http(s) URI. Returns the `jwks_uri`.
pub fn accept_discovery(
    status: Option<u16>,
    body: &[u8],
    issuer: &str,
    fetch: &Fetch,
) -> Result<String, String> {
    accept_status(status, body, fetch)?;
    let doc = json::parse_object(body)?;
    if doc.get("issuer") != Some(&Value::String(issuer.to_string())) {
        return Err("discovery 'issuer' does not match the provider's".into());
    }
    match doc.get("jwks_uri") {
        Some(Value::String(uri)) if split_uri(uri).is_some() => Ok(uri.clone()),
        _ => Err("discovery 'jwks_uri' missing or not an http(s) URI".into()),
    }
}

fn accept_status(status: Option<u16>, body: &[u8], fetch: &Fetch) -> Result<(), String> {
    match status {
        Some(200) => {}
        Some(other) => return Err(format!("status {other}")),
        None => return Err("no response (timeout or connection failure)".into()),
    }
    if body.len() > fetch.max_body_bytes {
        return Err(format!("body larger than {} bytes", fetch.max_body_bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::public_jwk;
    use serde_json::json;

    #[test]
    fn records_read_back_what_serde_wrote() {
        let fetch = FetchRecord {
            lease_until_ms: 1,
            owner: 2,
            last_attempt_ms: 3,
            last_kid_fetch_ms: 4,
            keys_version: 5,
            failures: 6,
            retry_at_ms: u64::MAX,
        };
        let bytes = serde_json::to_vec(&fetch).unwrap();
        assert_eq!(FetchRecord::decode(&bytes), Some(fetch));
        let keys = KeysRecord {
            fetched_at_ms: 7,
            jwks: r#"{"keys": []}"#.into(),
            jwks_uri: Some("https://idp.test/jwks".into()),
            discovered_at_ms: 8,
        };
        let bytes = serde_json::to_vec(&Some(keys.clone())).unwrap();
        assert_eq!(
            <Option<KeysRecord>>::decode(&bytes),
            Some(Some(keys.clone()))
        );
        assert_eq!(<Option<KeysRecord>>::decode(b"null"), Some(None));
        let without_uri = KeysRecord {
            jwks_uri: None,
            ..keys
        };
        let bytes = serde_json::to_vec(&without_uri).unwrap();
        assert_eq!(KeysRecord::decode(&bytes), Some(without_uri));
        assert_eq!(u64::decode(b"42"), Some(42));
    }

    #[test]
    fn records_of_another_shape_are_not_read() {
        // A fetch record of an older version: its missing fields are 0.
        assert_eq!(
            FetchRecord::decode(br#"{"owner": 9}"#),
            Some(FetchRecord {
                owner: 9,
                ..FetchRecord::default()
            })
        );
        for bad in [
            &br#"{"owner": "9"}"#[..],
            br#"{"owner": -1}"#,
            br#"{"failures": 4294967296}"#,
            br#"[]"#,
            b"not json",
        ] {
            assert_eq!(
                FetchRecord::decode(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &br#"{"fetched_at_ms": 1, "jwks_uri": null, "discovered_at_ms": 0}"#[..],
            br#"{"fetched_at_ms": 1, "jwks": "{}", "jwks_uri": 5, "discovered_at_ms": 0}"#,
            br#"{"fetched_at_ms": 1.5, "jwks": "{}", "discovered_at_ms": 0}"#,
        ] {
            assert_eq!(
                KeysRecord::decode(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(u64::decode(b"-1"), None);
    }

    fn fetch() -> Fetch {
        Fetch {
            cluster: "idp".into(),
            authority: "idp.test".into(),
            path: "/jwks".into(),
            fallback_path: None,
            jwks_cluster: "idp".into(),
            headers: Vec::new(),
            timeout_ms: 5000,
            cache_duration_s: 600,
            cooldown_s: 30,
            stale_max_s: 3600,
            max_body_bytes: 1 << 20,
            max_keys: 64,
            jwt_svid: false,
        }
    }

    fn limit(max_keys: usize) -> Accept {
        Accept::signing(max_keys)
    }

    fn jwks() -> String {
        json!({"keys": [public_jwk("rsa-a", "a")]}).to_string()
    }

    fn record(at: u64) -> KeysRecord {
        KeysRecord {
            fetched_at_ms: at,
            jwks: jwks(),
            jwks_uri: None,
            discovered_at_ms: 0,
        }
    }

    #[test]
    fn a_fetched_set_is_adopted_as_parsed_and_another_record_is_parsed() {
        let parsed = |text: &str| KeySet::parse(text.as_bytes(), Origin::Remote).unwrap().set;
        let kids = |l: &LocalKeys| {
            l.set
                .as_ref()
                .map(|s| s.keys().iter().map(|k| k.kid.clone()).collect::<Vec<_>>())
        };
        // The record holds the fetched JWKS: the given set is kept as it is.
        let mut local = LocalKeys::default();
        local.adopt_fetched(record(0), jwks().as_bytes(), parsed(&jwks()), limit(64));
        assert_eq!(kids(&local), Some(vec![Some("a".to_string())]));
        assert_eq!(local.record, Some(record(0)));
        // Another worker's JWKS won the race: the record's own keys, parsed with the limit.
        let other = json!({"keys": [public_jwk("rsa-b", "b")]}).to_string();
        let mut local = LocalKeys::default();
        local.adopt_fetched(record(0), other.as_bytes(), parsed(&other), limit(64));
        assert_eq!(kids(&local), Some(vec![Some("a".to_string())]));
        let mut local = LocalKeys::default();
        local.adopt_fetched(record(0), other.as_bytes(), parsed(&other), limit(0));
        assert!(local.set.is_none());
    }

    #[test]
    fn one_lease_at_a_time_and_it_expires() {
        let f = fetch();
        let idle = FetchRecord::default();
        assert!(idle.may_start(Trigger::NoKeys, 1000, &f));
        let leased = idle.leased(1, Trigger::NoKeys, 1000, &f);
        assert!(!leased.may_start(Trigger::NoKeys, 1001, &f));
        assert!(!leased.may_start(Trigger::Refresh, 1001, &f));
        // A holder that never reports back loses the lease after its timeouts.
        assert!(leased.may_start(Trigger::NoKeys, 1000 + 2 * 5000 + LEASE_SLACK_MS, &f));
    }

    #[test]
    fn unknown_kid_refetch_respects_the_cooldown() {
        let f = fetch();
        // A routine fetch does not start the cooldown...
        let routine = FetchRecord::default()
            .leased(1, Trigger::NoKeys, 10_000, &f)
            .succeeded(10_000);
        assert!(routine.may_start(Trigger::UnknownKid, 10_001, &f));
        // ...an unknown-kid fetch does, and a routine one after it does not reset it.
        let kid = routine
            .leased(1, Trigger::UnknownKid, 10_001, &f)
            .succeeded(10_001);
        assert!(!kid.may_start(Trigger::UnknownKid, 10_001 + 29_999, &f));
        assert!(kid.may_start(Trigger::Refresh, 10_002, &f));
        let refreshed = kid
            .leased(1, Trigger::Refresh, 20_000, &f)
            .succeeded(20_000);
        assert!(!refreshed.may_start(Trigger::UnknownKid, 10_001 + 29_999, &f));
        assert!(refreshed.may_start(Trigger::UnknownKid, 10_001 + 30_000, &f));
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_minute() {
        let f = fetch();
        let mut r = FetchRecord::default();
        let mut waits = Vec::new();
        for _ in 0..9 {
            r = r.leased(1, Trigger::NoKeys, 0, &f).failed(0);
            waits.push(r.retry_at_ms);
            assert!(!r.may_start(Trigger::NoKeys, r.retry_at_ms - 1, &f));
            assert!(r.may_start(Trigger::NoKeys, r.retry_at_ms, &f));
        }
        assert_eq!(
            waits,
            vec![
                1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000
            ]
        );
        // An unknown kid is not held back by the back-off, only by its own cooldown.
        assert!(r.may_start(Trigger::UnknownKid, 1, &f));
        let kid = r.leased(1, Trigger::UnknownKid, 1, &f).failed(2);
        assert!(!kid.may_start(Trigger::UnknownKid, 1 + 29_999, &f));
        assert!(kid.may_start(Trigger::UnknownKid, 1 + 30_000, &f));
        assert_eq!(r.succeeded(5).failures, 0);
        assert!(
            !r.leased(1, Trigger::NoKeys, 0, &f)
                .released()
                .lease_active(1)
        );
    }

    #[test]
    fn state_follows_the_records() {
        let f = fetch();
        let mut local = LocalKeys::default();
        assert!(matches!(local.state(0, &f), KeyState::Loading));
        local.fetch = FetchRecord::default()
            .leased(1, Trigger::NoKeys, 0, &f)
            .failed(0);
        assert!(matches!(
            local.state(10, &f),
            KeyState::Unavailable { retry_after_s: 1 }
        ));
        assert!(matches!(local.state(1000, &f), KeyState::Loading));

        local.adopt(record(0), limit(64));
        assert!(matches!(local.state(10, &f), KeyState::Ready { .. }));
        // Stale keys keep serving through failures, up to cache + stale_max.
        let end = (600 + 3600) * 1000;
        assert!(matches!(local.state(end - 1, &f), KeyState::Ready { .. }));
        local.fetch = FetchRecord::default()
            .leased(1, Trigger::NoKeys, end - 10, &f)
            .failed(end - 10);
        assert!(matches!(local.state(end, &f), KeyState::Unavailable { .. }));
    }

    #[test]
    fn refetch_is_allowed_while_a_fetch_is_in_flight_or_after_the_cooldown() {
        let f = fetch();
        let mut local = LocalKeys::default();
        local.adopt(record(0), limit(64));
        let allowed = |l: &LocalKeys, now| {
            matches!(
                l.state(now, &f),
                KeyState::Ready {
                    refetch_allowed: true,
                    ..
                }
            )
        };
        local.fetch = FetchRecord::default().leased(1, Trigger::UnknownKid, 1000, &f);
        assert!(allowed(&local, 1001));
        local.fetch = local.fetch.succeeded(1000);
        assert!(!allowed(&local, 1001));
        assert!(allowed(&local, 31_000));
    }

    #[test]
    fn refresh_before_expiry_and_rediscovery() {
        let f = fetch();
        let r = record(0);
        assert!(!r.wants_refresh(539_999, &f));
        assert!(r.wants_refresh(540_000, &f));
        assert!(r.discovery_expired(0, &f));
        let discovered = KeysRecord {
            jwks_uri: Some("http://idp.test/jwks".into()),
            discovered_at_ms: 0,
            ..r
        };
        assert!(!discovered.discovery_expired(599_999, &f));
        assert!(discovered.discovery_expired(600_000, &f));
    }

    #[test]
    fn answers_are_checked() {
        let f = fetch();
        assert!(accept_jwks(Some(200), jwks().as_bytes(), &f).is_ok());
        assert!(accept_jwks(Some(500), jwks().as_bytes(), &f).is_err());
        assert!(accept_jwks(None, b"", &f).is_err());
        assert!(accept_jwks(Some(200), b"<html>", &f).is_err());
        assert!(accept_jwks(Some(200), br#"{"keys":[]}"#, &f).is_err());
        let small = Fetch {
            max_body_bytes: 10,
            ..fetch()
        };
        assert!(accept_jwks(Some(200), jwks().as_bytes(), &small).is_err());

        let doc = |iss: &str, uri: &str| json!({"issuer": iss, "jwks_uri": uri}).to_string();
        let iss = "https://issuer.test/";
        assert_eq!(
            accept_discovery(
                Some(200),
                doc(iss, "https://issuer.test/jwks").as_bytes(),
                iss,
                &f
            ),
            Ok("https://issuer.test/jwks".into())
        );
        assert!(
            accept_discovery(
                Some(200),
                doc("https://issuer.test", "https://issuer.test/jwks").as_bytes(),
                iss,
                &f
            )
            .is_err()
        );
        assert!(
            accept_discovery(
                Some(200),
                doc(iss, "file:///etc/passwd").as_bytes(),
                iss,
                &f
            )
            .is_err()
        );
        assert!(
            accept_discovery(
                Some(404),
                doc(iss, "https://issuer.test/jwks").as_bytes(),
                iss,
                &f
            )
            .is_err()
        );
    }
}
