//! Test support for the filter (`jwt_filter`), a dev-dependency of its unit tests (as
//! `crate::testkit`, the `keys` module), its integration tests and its benchmark. Nothing
//! here names an item of the filter crate: what does (such as a Wycheproof group's key set)
//! stays in `filter/tests/support/`.
//!
//! - [`keys`]: the project's fixed test keys (`tests/keys/`), their public JWKs, a signer.
//! - [`host`]: a native stand-in for Envoy's `verify_signature` foreign function.
//! - [`wycheproof`]: Project Wycheproof's vector files.
//! - Models of upstream stacks, written from their documented behaviour, independently of
//!   the filter: [`families`] (paths), [`readers`] (credentials), [`header_names`] (header
//!   names), [`authorities`] (hosts).

pub mod authorities;
pub mod families;
pub mod header_names;
pub mod host;
pub mod keys;
pub mod readers;

use serde_json::Value;
use std::path::PathBuf;

/// One Wycheproof vector file, parsed: from `tests/wycheproof/` in the repository, or
/// `$WYCHEPROOF_DIR`.
pub fn wycheproof(file: &str) -> Value {
    let dir = std::env::var_os("WYCHEPROOF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/wycheproof"));
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}
