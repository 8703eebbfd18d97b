//! A JWT access-token filter for proxy-wasm hosts (Envoy, Istio, ...).
//!
//! The modules below are the core: pure functions of the request, the clock and the key
//! sets, with no proxy-wasm types, so they build and test natively. The proxy-wasm adapter
//! (built for wasm32 only) moves bytes between the host and the core.

pub mod alg;
pub mod authenticator;
pub mod authority;
pub mod authz;
pub mod base64url;
pub mod binding;
pub mod claims;
pub mod config;
pub mod dpop;
pub mod ec_point;
pub mod extract;
pub mod json;
pub mod jwks;
pub mod jws;
pub mod key_cache;
pub mod param_names;
pub mod path;
pub mod replay;
pub mod request;
pub mod response;
pub mod rules;
pub mod shared_keys;
pub mod spki;
pub mod template;
pub mod token_cache;
pub mod verify;
pub mod worker;

#[cfg(target_arch = "wasm32")]
mod proxy;

#[cfg(test)]
#[path = "../tests/support/keys.rs"]
mod testkit;
