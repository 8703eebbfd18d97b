//! A provider's key-cache records in shared data (`shared`): the fetch lease and the last
//! good key set, each under a key named after the provider and its fetch settings.

use crate::config::Fetch;
use crate::keys::key_cache::{FetchRecord, KeysRecord, Trigger};
use crate::keys::shared::{SharedData, read, update};

/// The shared-data keys of one provider. They include a hash of its fetch settings, so a
/// configuration that points the provider elsewhere never reads the old keys.
pub struct Slots {
    fetch: String,
    keys: String,
}

impl Slots {
    pub fn new(provider: &str, settings: &str) -> Self {
        // FNV-1a: stable across builds and VMs, which `DefaultHasher` does not promise.
        let hash = settings.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Slots {
            fetch: format!("jwt_filter.{provider}.{hash:016x}.fetch"),
            keys: format!("jwt_filter.{provider}.{hash:016x}.keys"),
        }
    }

    /// The fetch record (the default one where there is none or it does not parse).
    pub fn fetch(&self, data: &dyn SharedData) -> FetchRecord {
        read(data, &self.fetch).map(|(r, _)| r).unwrap_or_default()
    }

    pub fn keys(&self, data: &dyn SharedData) -> Option<KeysRecord> {
        read(data, &self.keys).map(|(r, _)| r)
    }

    /// Takes the fetch lease for `owner` if `trigger` allows a fetch now; returns the
    /// record as written. Refused too when the fetch record announces a key set newer than
    /// `known` (the version the worker decided with) that the keys record holds: a fetch
    /// ended since the worker last looked, and it adopts those keys instead. An announced
    /// set that is gone (shared data wiped under a stale fetch record) does not stop it.
    pub fn claim(
        &self,
        data: &dyn SharedData,
        owner: u64,
        (trigger, known): (Trigger, u64),
        now_ms: u64,
        fetch: &Fetch,
    ) -> Option<FetchRecord> {
        let mut announced = 0;
        let take = |known: u64, announced: &mut u64| {
            update(data, &self.fetch, |record: &FetchRecord| {
                *announced = record.keys_version;
                (record.keys_version <= known && record.may_start(trigger, now_ms, fetch))
                    .then(|| record.leased(owner, trigger, now_ms, fetch))
            })
        };
        take(known, &mut announced).or_else(|| {
            let stored = self.keys(data).map_or(0, |k| k.fetched_at_ms);
            (announced > known && stored < announced)
                .then(|| take(u64::MAX, &mut announced))
                .flatten()
        })
    }

    /// A fetch by `owner` brought `keys`: they replace the keys record, under a version
    /// (`fetched_at_ms`) above the one there, so that every worker sees the change even
    /// when two fetches end in the same millisecond. The fetch record ends `owner`'s lease
    /// (if it still holds it) and announces that version. Returns both records as written.
    pub fn succeeded(
        &self,
        data: &dyn SharedData,
        owner: u64,
        keys: KeysRecord,
    ) -> (FetchRecord, KeysRecord) {
        let written = update(data, &self.keys, |current: &Option<KeysRecord>| {
            let after = current
                .as_ref()
                .map_or(0, |c| c.fetched_at_ms.saturating_add(1));
            Some(Some(KeysRecord {
                fetched_at_ms: keys.fetched_at_ms.max(after),
                ..keys.clone()
            }))
        });
        let keys = written.flatten().unwrap_or(keys);
        let version = keys.fetched_at_ms;
        let fetch = self.finish(data, |record| {
            let newest = record.keys_version.max(version);
            if record.owner == owner {
                Some(record.succeeded(newest))
            } else {
                (record.keys_version < newest).then(|| FetchRecord {
                    keys_version: newest,
                    ..record.clone()
                })
            }
        });
        (fetch, keys)
    }

    /// `owner`'s fetch failed: its lease ends and the failure counts toward the back-off.
    /// A lease that has passed to someone else is left alone.
    pub fn failed(&self, data: &dyn SharedData, owner: u64, now_ms: u64) -> FetchRecord {
        self.finish(data, |record| {
            (record.owner == owner).then(|| record.failed(now_ms))
        })
    }

    /// `owner` gives its lease back without a result (the call died with its stream).
    pub fn released(&self, data: &dyn SharedData, owner: u64) -> FetchRecord {
        self.finish(data, |record| {
            (record.owner == owner).then(|| record.released())
        })
    }

    fn finish(
        &self,
        data: &dyn SharedData,
        change: impl FnMut(&FetchRecord) -> Option<FetchRecord>,
    ) -> FetchRecord {
        update(data, &self.fetch, change).unwrap_or_else(|| self.fetch(data))
    }
}
