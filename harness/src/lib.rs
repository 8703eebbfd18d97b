//! A native proxy-wasm host (wasmtime) that runs HTTP filters the way Envoy does, a scenario
//! runner on top of it, named keys and tokens, and two small demo servers.

pub mod bench;
pub mod check_config;
pub mod fuzz;
pub mod host;
pub mod keys;
pub mod scenario;
pub mod servers;
pub mod suite;
pub mod time;
pub mod token;
