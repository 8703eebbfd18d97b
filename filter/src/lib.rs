//! A JWT access-token filter for proxy-wasm hosts (Envoy, Istio, ...).
//!
//! The layers, bottom first; each uses only those listed before it (checked by
//! `tests/layers.rs`). All but the adapter are pure functions of the request, the clock and
//! the key sets, with no proxy-wasm types, so they build and test natively.

pub mod jose; // JOSE primitives: JSON, base64url, JWS, JWK sets, signatures, claims
pub mod http; // the request as read: headers, path, authority, spellings
pub mod policy; // rules, requirements, token sources, bindings, answers
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::panic,
    reason = "config is being split per object in the shape-config branch; its sites are fixed there"
)]
pub mod config; // the configuration, read into the policy's types
pub mod keys; // key sets and caches, shared between workers
pub mod decision; // one request's verdict, one worker's streams and fetches
#[cfg(target_arch = "wasm32")]
mod proxy; // the proxy-wasm adapter: moves bytes between the host and the decision

#[cfg(test)]
#[path = "../tests/support/keys.rs"]
mod testkit;
