//! Support for the integration tests that names the filter's own types: a Project
//! Wycheproof test group's key set as the filter holds it. Everything else (the test keys, the
//! native `verify_signature`, the vector files, the models of upstream stacks) is in the
//! `jwt_filter_testkit` crate (testkit/).

use jwt_filter::jose::jwks::{KeySet, Origin};
use serde_json::{Value, json};

/// A test group's key set as the filter would hold it: public keys as fetched from the
/// network, symmetric keys as configured.
pub fn group_key_set(group: &Value) -> Result<KeySet, String> {
    let key = group.get("public").unwrap_or(&group["private"]);
    let doc = if key.get("keys").is_some() {
        key.clone()
    } else {
        json!({ "keys": [key] })
    };
    let symmetric = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kty"] == "oct");
    let origin = if symmetric {
        Origin::Config
    } else {
        Origin::Remote
    };
    KeySet::from_object(doc.as_object().unwrap(), origin).map(|loaded| loaded.set)
}
