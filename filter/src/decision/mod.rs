//! The decision: one request through the rules, requirements and tokens to a verdict
//! (`authenticator`), and one worker's requests, key fetches and waits (`worker`).

pub mod authenticator;
pub mod worker;
