//! The host's shared data as the core's `SharedData`.

use super::abi;
use crate::keys::shared::{SetError, SharedData};

pub struct HostSharedData;

impl SharedData for HostSharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        abi::shared_data(key).ok()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        abi::set_shared_data(key, value, cas).map_err(|status| match status {
            abi::CAS_MISMATCH => SetError::CasMismatch,
            _ => SetError::Refused,
        })
    }
}
