//! `filter/src/http/fold_table.rs` (the table of `path::fold`) is what `make unicode`
//! generates from the standard library's case conversions with the toolchain at hand: a
//! toolchain with a newer Unicode version fails here until the table is regenerated (one with
//! an older version cannot check it, and says so). That `fold` agrees with the standard
//! library for every character is `path/tests.rs`'s.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unreachable,
    reason = "test code: a panic fails the test, and never runs in the VM"
)]
#![cfg(not(target_arch = "wasm32"))]

use jwt_filter::http::generate::{FOLD_TABLE_FILE, fold_table};
use jwt_filter::http::path::FOLD_UNICODE_VERSION;
use std::path::PathBuf;

#[test]
fn fold_table_is_fresh() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(FOLD_TABLE_FILE);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let (major, minor, update) = char::UNICODE_VERSION;
    if char::UNICODE_VERSION < FOLD_UNICODE_VERSION {
        // Not stale: newer than this toolchain, whose tables cannot check it.
        eprintln!(
            "not checked: {FOLD_TABLE_FILE} is Unicode {FOLD_UNICODE_VERSION:?}, this \
             toolchain's is older, {:?}",
            char::UNICODE_VERSION
        );
        return;
    }
    assert!(
        on_disk == fold_table(),
        "{FOLD_TABLE_FILE} is not what the standard library's case conversions (Unicode \
         {major}.{minor}.{update}) generate: run `make unicode`"
    );
}
