//! The decision: one request through the rules, requirements and tokens to a verdict
//! (`authenticator`, in the types of `outcome`), and one worker's requests, key fetches and
//! waits (`worker`).

pub mod outcome;
pub mod authenticator;
pub mod worker;
