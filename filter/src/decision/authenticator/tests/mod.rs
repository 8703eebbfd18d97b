//! Decisions end to end through the core: every rule of the README and every attack of
//! the reference list, with real signatures. One file per concern; `support` holds the
//! shared fixtures.

mod support;

mod rules;
mod claims;
mod signatures;
mod token_format;
mod keys;
mod key_sources;
mod tenants;
mod forwarding;
mod header_bytes;
mod answers;
mod policies;
mod dpop;
mod bodies;
mod denials;
