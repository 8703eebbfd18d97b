//! Support for the integration tests: the test keys, and Project Wycheproof's vectors
//! (`tests/wycheproof/` in the repository, or `$WYCHEPROOF_DIR`).
#![allow(dead_code)] // each test target uses a different part

pub mod families;
pub mod host;
pub mod keys;
pub mod readers;

use jwt_filter::jose::jwks::{KeySet, Origin};
use serde_json::{Value, json};
use std::path::PathBuf;

/// One Wycheproof vector file, parsed.
pub fn wycheproof(file: &str) -> Value {
    let dir = std::env::var_os("WYCHEPROOF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/wycheproof"));
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

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
