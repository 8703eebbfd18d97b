//! The proxy-wasm ABI's encodings, written once for both sides of the ABI: the filter
//! (`jwt_filter`, in the VM) and the host that runs it in tests (`harness`). No
//! dependencies; builds for wasm32-wasip1 and natively.
//!
//! What a host hands over is untrusted bytes, and a panic in the VM kills it: the lints
//! below refuse the constructs that can panic, and decoding answers with values.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

pub mod header_map;
