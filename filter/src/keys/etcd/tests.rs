use super::*;
use crate::keys::shared::SetError;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

fn store() -> EtcdStore {
    EtcdStore {
        cluster: "etcd".into(),
        authority: "etcd".into(),
        prefix: "/jwt_filter/dpop/".into(),
        timeout_ms: 1000,
        local_only: false,
    }
}

#[test]
fn a_proofs_key_is_the_prefix_and_16_bytes_of_its_id() {
    let proof = ProofUse {
        id: [7; 32],
        until_s: 1_700_000_301,
        nonce: None,
    };
    assert_eq!(
        key(&store(), &proof),
        "/jwt_filter/dpop/07070707070707070707070707070707"
    );
    // The window is not part of it: gateways configured with other windows agree.
    let later = ProofUse {
        until_s: 1_700_000_999,
        ..proof.clone()
    };
    assert_eq!(key(&store(), &later), key(&store(), &proof));
}

#[test]
fn the_transaction_creates_the_key_only_if_it_has_no_create_revision() {
    let body = txn_body("/p/AQ", 7587);
    let value: Value = serde_json::from_str(&body).unwrap();
    // "/p/AQ" in standard base64, as etcd's gateway reads bytes.
    assert_eq!(
        value,
        serde_json::json!({
            "compare": [{"key": "L3AvQVE=", "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": "L3AvQVE=", "lease": "7587"}}]
        })
    );
    assert_eq!(grant_body(95), r#"{"TTL":"95"}"#);
    for (bytes, want) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
    ] {
        assert_eq!(base64(bytes.as_bytes()), want);
    }
    assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
}

#[test]
fn answers_to_a_transaction_read_as_etcd_3_4_writes_them() {
    // Recorded from etcd 3.4.23's gateway.
    let created = br#"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"2"}}}]}"#;
    let exists = br#"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"}}"#;
    let lease_gone = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
    let no_leader = br#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#;
    assert_eq!(read_txn(Some(200), created), Txn::Created);
    assert_eq!(read_txn(Some(200), exists), Txn::Exists);
    assert_eq!(read_txn(Some(404), lease_gone), Txn::LeaseGone);
    for (status, body) in [
        (None, &b""[..]),
        (Some(503), &no_leader[..]),
        (Some(200), b"{}"),
        (Some(200), b"<html>"),
        (Some(200), br#"{"header":{},"succeeded":"yes"}"#),
        (Some(404), b"not found"),
        (Some(500), &created[..]),
    ] {
        assert!(
            matches!(read_txn(status, body), Txn::Failed(_)),
            "{status:?}"
        );
    }
}

#[test]
fn answers_to_a_grant_give_its_id() {
    let granted = br#"{"header":{"cluster_id":"1","member_id":"2","revision":"1","raft_term":"2"},"ID":"2324035874348570885","TTL":"30"}"#;
    assert_eq!(
        read_grant(Some(200), granted),
        Some(2_324_035_874_348_570_885)
    );
    assert_eq!(read_grant(Some(200), br#"{"ID":42}"#), Some(42));
    for (status, body) in [
        (Some(503), &granted[..]),
        (None, &b""[..]),
        (Some(200), br#"{"ID":"0"}"#),
        (Some(200), br#"{"ID":"-1"}"#),
        (Some(200), br#"{"error":"x","ID":"5"}"#),
        (Some(200), b"{}"),
    ] {
        assert_eq!(read_grant(status, body), None, "{status:?}");
    }
}

#[test]
fn a_lease_outlives_every_window_that_ends_in_its_slot() {
    let now = 1_700_000_000;
    let until = now + 301;
    let slot = lease_slot(until);
    let ttl = lease_ttl_s(slot, now);
    assert!(now + ttl >= until + LEASE_MARGIN_S);
    assert!(now + ttl >= (slot + 1) * LEASE_SLOT_S);
    assert!(ttl <= 301 + LEASE_SLOT_S + LEASE_MARGIN_S);
}

#[derive(Default)]
struct Memory {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next: Cell<u32>,
}

impl SharedData for Memory {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.map.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let mut map = self.map.borrow_mut();
        if map.get(key).is_some_and(|(_, c)| cas != 0 && cas != *c) {
            return Err(SetError::CasMismatch);
        }
        self.next.set(self.next.get() + 1);
        map.insert(key.into(), (value.to_vec(), self.next.get()));
        Ok(())
    }
}

#[test]
fn leases_are_shared_the_first_recorded_wins_and_a_slot_reuses_its_record() {
    let data = Memory::default();
    let now = 1_700_000_000;
    let slot = lease_slot(now + 301);
    let key = lease_key(&store(), slot);
    assert_eq!(
        key,
        format!(
            "jwt_filter.etcd.etcd./jwt_filter/dpop/.{}",
            slot % LEASE_RING
        )
    );
    assert_eq!(shared_lease(&data, &key, slot), None);
    remember_lease(&data, &key, slot, 11, 0);
    // Another worker's grant for the same slot: the recorded one is kept.
    remember_lease(&data, &key, slot, 12, 0);
    assert_eq!(shared_lease(&data, &key, slot), Some(11));
    // etcd lost lease 11: forgotten (not a lease that replaced it), then replaced.
    remember_lease(&data, &key, slot, 0, 99);
    assert_eq!(shared_lease(&data, &key, slot), Some(11));
    remember_lease(&data, &key, slot, 0, 11);
    assert_eq!(shared_lease(&data, &key, slot), None);
    remember_lease(&data, &key, slot, 15, 0);
    assert_eq!(shared_lease(&data, &key, slot), Some(15));
    // The slot LEASE_RING later has the same record: the old lease is not its.
    let later = slot + LEASE_RING;
    assert_eq!(lease_key(&store(), later), key);
    assert_eq!(shared_lease(&data, &key, later), None);
    remember_lease(&data, &key, later, 16, 0);
    assert_eq!(shared_lease(&data, &key, later), Some(16));
    assert_eq!(shared_lease(&data, &key, slot), None);
    // The longest window fits the ring.
    const { assert!(LEASE_RING * LEASE_SLOT_S > 3901 + LEASE_SLOT_S + LEASE_AHEAD_S) };
    // Another namespace keeps its own leases.
    let other = EtcdStore {
        prefix: "/other/".into(),
        ..store()
    };
    assert_ne!(lease_key(&other, slot), key);
}
