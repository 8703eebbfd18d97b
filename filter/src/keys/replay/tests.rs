use super::*;
use crate::keys::shared::SetError;
use std::cell::RefCell;
use std::collections::HashMap;

/// Shared data as proxy-wasm-cpp-host keeps it (CAS 0 or a missing key always writes).
#[derive(Default)]
struct Memory {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    refuse: Cell<bool>,
}

impl SharedData for Memory {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.map.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        if self.refuse.get() {
            return Err(SetError::Refused);
        }
        let mut map = self.map.borrow_mut();
        if let Some((_, current)) = map.get(key)
            && cas != 0
            && cas != *current
        {
            return Err(SetError::CasMismatch);
        }
        self.next_cas.set(self.next_cas.get() + 1);
        map.insert(key.to_string(), (value.to_vec(), self.next_cas.get()));
        Ok(())
    }
}

const NOW: u64 = 1_700_000_000;

fn proof(n: u32, until_s: u64) -> ProofUse {
    let digest = ring::digest::digest(&ring::digest::SHA256, &n.to_be_bytes());
    ProofUse {
        id: digest.as_ref().try_into().unwrap(),
        until_s,
    }
}

#[test]
fn a_proof_is_accepted_once_until_its_window_closes() {
    let data = Memory::default();
    let p = proof(1, NOW + 300);
    assert_eq!(record(&data, &p, NOW), Seen::First);
    assert_eq!(record(&data, &p, NOW + 1), Seen::Replayed);
    assert_eq!(record(&data, &p, NOW + 299), Seen::Replayed);
    // Its window closed: the entry is gone (the proof itself would fail its `iat` check).
    assert_eq!(record(&data, &p, NOW + 300), Seen::First);
    assert_eq!(record(&data, &proof(2, NOW + 300), NOW), Seen::First);
}

#[test]
fn every_worker_shares_one_salt_and_so_one_record_per_proof() {
    let data = Memory::default();
    assert_eq!(record(&data, &proof(1, NOW + 300), NOW), Seen::First);
    let salt = data.get(SALT_KEY).unwrap().0;
    assert_eq!(salt.len(), 16);
    assert_eq!(record(&data, &proof(1, NOW + 300), NOW), Seen::Replayed);
    assert_eq!(data.get(SALT_KEY).unwrap().0, salt);
}

#[test]
fn a_full_record_refuses_new_proofs_and_forgets_none() {
    let data = Memory::default();
    let target = proof(0, NOW + 300);
    assert_eq!(record(&data, &target, NOW), Seen::First);
    let salt = data.get(SALT_KEY).unwrap().0;
    let home = bucket(&salt, &target.id);
    // More proofs for the same record, live for 100 to 149 s.
    let mut same_record = (1..)
        .map(|n| proof(n, NOW + 100 + u64::from(n % 50)))
        .filter(|p| bucket(&salt, &p.id) == home);
    let mut soonest = u64::MAX;
    for _ in 1..PER_BUCKET {
        let p = same_record.next().unwrap();
        soonest = soonest.min(p.until_s);
        assert_eq!(record(&data, &p, NOW), Seen::First);
    }
    // One more: refused, with the time until its soonest entry leaves.
    let extra = same_record.next().unwrap();
    assert_eq!(
        record(&data, &extra, NOW),
        Seen::Full {
            retry_after_s: soonest - NOW
        }
    );
    // Nothing was forgotten to make room; once the short-lived ones leave, there is room.
    assert_eq!(record(&data, &target, NOW), Seen::Replayed);
    assert_eq!(record(&data, &extra, NOW + 150), Seen::First);
    assert_eq!(record(&data, &target, NOW + 150), Seen::Replayed);
}

#[test]
fn shared_data_that_refuses_writes_fails_closed() {
    let data = Memory::default();
    data.refuse.set(true);
    assert_eq!(record(&data, &proof(1, NOW + 300), NOW), Seen::Unavailable);
}
