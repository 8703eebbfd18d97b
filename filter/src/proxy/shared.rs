//! The key-cache records in the host's shared data (one copy per VM id, visible to every
//! worker), read and written with compare-and-swap.

use super::abi;
use crate::key_cache::{FetchRecord, KeysRecord};
use serde::Serialize;
use serde::de::DeserializeOwned;

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

    /// The fetch record and its CAS (0 when the record does not exist yet).
    pub fn fetch(&self) -> (FetchRecord, u32) {
        read(&self.fetch).unwrap_or_default()
    }

    /// Writes the fetch record if nobody wrote it since `cas` was read.
    pub fn swap_fetch(&self, record: &FetchRecord, cas: u32) -> bool {
        write(&self.fetch, record, Some(cas).filter(|c| *c != 0))
    }

    /// Creates the fetch record if it does not exist yet (at configure time, before any
    /// worker can hold a lease), so that every later claim is a real compare-and-swap.
    pub fn init(&self) {
        if read::<FetchRecord>(&self.fetch).is_none() {
            self.put_fetch(&FetchRecord::default());
        }
    }

    pub fn put_fetch(&self, record: &FetchRecord) {
        write(&self.fetch, record, None);
    }

    pub fn keys(&self) -> Option<KeysRecord> {
        read(&self.keys).map(|(record, _)| record)
    }

    pub fn put_keys(&self, record: &KeysRecord) {
        write(&self.keys, record, None);
    }
}

fn read<T: DeserializeOwned>(key: &str) -> Option<(T, u32)> {
    let (bytes, cas) = abi::shared_data(key).ok()?;
    let record = serde_json::from_slice(&bytes).ok()?;
    Some((record, cas))
}

fn write<T: Serialize>(key: &str, record: &T, cas: Option<u32>) -> bool {
    let Ok(bytes) = serde_json::to_vec(record) else {
        return false;
    };
    abi::set_shared_data(key, &bytes, cas.unwrap_or(0)).is_ok()
}
