//! `filter/src/http/fold_table.rs` (the table of `path::fold`) is what `make unicode`
//! generates from the standard library's case conversions with the toolchain at hand: a
//! toolchain with another Unicode version fails here until the table is regenerated. (That
//! `fold` agrees with the standard library for every character is `path/tests.rs`'s.)
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
use std::path::PathBuf;

#[test]
fn fold_table_is_fresh() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(FOLD_TABLE_FILE);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let (major, minor, update) = char::UNICODE_VERSION;
    assert!(
        on_disk == fold_table(),
        "{FOLD_TABLE_FILE} is not what the standard library's case conversions (Unicode \
         {major}.{minor}.{update}) generate: run `make unicode`"
    );
}
