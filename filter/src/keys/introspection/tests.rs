use super::*;
use crate::keys::shared::SetError;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Shared data as proxy-wasm-cpp-host keeps it (CAS 0 or a missing key always writes).
#[derive(Default)]
struct Memory {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
}

impl SharedData for Memory {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.map.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
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

const NOW: u64 = 1_700_000_000_000;
const TTL: Ttl = Ttl {
    active_s: 300,
    inactive_s: 10,
};

fn accept(status: Option<u16>, body: &str) -> Result<Outcome, &'static str> {
    accept_answer(status, body.as_bytes(), 1000, TTL, NOW)
}

#[test]
fn the_cache_key_is_a_keyed_hash_never_the_token() {
    let token = "2YotnFZFEjr1zCsicMWpAA";
    let a = Entry::new(&[1; 32], "opaque", token);
    assert_eq!(a, Entry::new(&[1; 32], "opaque", token));
    assert!(!a.key.contains(token) && !a.hash.contains(token));
    assert_eq!(a.hash.len(), 32);
    // Another salt, provider or token: another hash.
    assert_ne!(a.hash, Entry::new(&[2; 32], "opaque", token).hash);
    assert_ne!(a.hash, Entry::new(&[1; 32], "other", token).hash);
    assert_ne!(
        a.hash,
        Entry::new(&[1; 32], "opaque", "2YotnFZFEjr1zCsicMWpAB").hash
    );
    assert!(a.key.starts_with("jwt_filter.introspection.opaque."));
}

#[test]
fn the_salt_is_made_once_and_shared() {
    let data = Memory::default();
    let first = salt(&data).unwrap();
    assert_eq!(first.len(), 32);
    assert_eq!(salt(&data).unwrap(), first);
    // Another VM id's data: another salt.
    assert_ne!(salt(&Memory::default()).unwrap(), first);
}

#[test]
fn answers_must_be_200_json_objects_with_a_boolean_active() {
    assert_eq!(accept(None, "{}"), Err("no answer"));
    assert_eq!(
        accept(Some(500), r#"{"active":true}"#),
        Err("status is not 200")
    );
    assert_eq!(
        accept(Some(200), "active"),
        Err("answer is not a JSON object")
    );
    assert_eq!(
        accept(Some(200), "[true]"),
        Err("answer is not a JSON object")
    );
    assert_eq!(accept(Some(200), "{}"), Err("'active' is not a boolean"));
    assert_eq!(
        accept(Some(200), r#"{"active":"true"}"#),
        Err("'active' is not a boolean")
    );
    assert_eq!(
        accept(Some(200), r#"{"active":true,"active":true}"#),
        Err("answer is not a JSON object")
    );
    let big = format!(r#"{{"active":false,"x":"{}"}}"#, "a".repeat(1000));
    assert_eq!(
        accept(Some(200), &big),
        Err("answer larger than max_body_bytes")
    );
    assert_eq!(
        accept(Some(200), r#"{"active":false}"#),
        Ok(Outcome::Inactive {
            until_ms: NOW + 10_000
        })
    );
}

#[test]
fn active_answers_are_kept_until_exp_and_at_most_the_ttl() {
    let until = |body: &str| match accept(Some(200), body).unwrap() {
        Outcome::Active { until_ms, .. } => until_ms,
        other => panic!("{other:?}"),
    };
    let now_s = NOW / 1000;
    assert_eq!(
        until(&format!(r#"{{"active":true,"exp":{}}}"#, now_s + 60)),
        NOW + 60_000
    );
    assert_eq!(
        until(&format!(r#"{{"active":true,"exp":{}}}"#, now_s + 3600)),
        NOW + 300_000
    );
    // No exp, or one past: only as long as an inactive answer (its check refuses it).
    assert_eq!(until(r#"{"active":true}"#), NOW + 10_000);
    assert_eq!(
        until(&format!(r#"{{"active":true,"exp":{}}}"#, now_s - 1)),
        NOW + 10_000
    );
}

#[test]
fn one_call_per_token_until_its_answer_or_its_lease_ends() {
    let data = Memory::default();
    let entry = Entry::new(&[7; 32], "opaque", "tok");
    assert_eq!(lookup(&data, &entry, NOW), Lookup::Missing);
    assert_eq!(claim(&data, &entry, NOW, 3000), Claim::Claimed);
    // Another worker (or stream) finds it pending.
    assert_eq!(claim(&data, &entry, NOW + 10, 3000), Claim::Pending);
    assert_eq!(lookup(&data, &entry, NOW + 10), Lookup::Missing);
    // A lease that ran out is claimed again.
    assert_eq!(claim(&data, &entry, NOW + 3000, 3000), Claim::Claimed);
    let answer = br#"{"active":true,"sub":"u"}"#.to_vec();
    let outcome = Outcome::Active {
        until_ms: NOW + 60_000,
        answer,
    };
    assert!(store(&data, &entry, &outcome, NOW + 3010));
    let Lookup::Active(claims) = lookup(&data, &entry, NOW + 3020) else {
        panic!()
    };
    assert_eq!(claims.get("sub"), Some(&Value::from("u")));
    assert_eq!(claim(&data, &entry, NOW + 3020, 3000), Claim::Answered);
    // Past its time, a miss; another token in the slot is a miss too.
    assert_eq!(lookup(&data, &entry, NOW + 60_000), Lookup::Missing);
    let other = Entry {
        hash: "0".repeat(32),
        ..entry.clone()
    };
    assert_eq!(lookup(&data, &other, NOW + 3020), Lookup::Missing);
}

#[test]
fn failures_hold_briefly_and_a_released_lease_frees_the_token() {
    let data = Memory::default();
    let entry = Entry::new(&[7; 32], "opaque", "tok");
    assert!(store(&data, &entry, &Outcome::Failed, NOW));
    assert_eq!(lookup(&data, &entry, NOW + 999), Lookup::Failed);
    assert_eq!(lookup(&data, &entry, NOW + 1000), Lookup::Missing);
    assert_eq!(claim(&data, &entry, NOW + 1000, 3000), Claim::Claimed);
    release(&data, &entry);
    assert_eq!(claim(&data, &entry, NOW + 1001, 3000), Claim::Claimed);
    // Release touches only a pending marker of the same token.
    assert!(store(
        &data,
        &entry,
        &Outcome::Inactive {
            until_ms: NOW + 5000
        },
        NOW
    ));
    release(&data, &entry);
    assert_eq!(lookup(&data, &entry, NOW + 1001), Lookup::Inactive);
}

#[test]
fn the_call_body_is_form_encoded() {
    assert_eq!(
        request_body("a+b/c=="),
        b"token=a%2Bb%2Fc%3D%3D&token_type_hint=access_token".to_vec()
    );
}
