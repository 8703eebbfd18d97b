//! State kept between requests: each worker's key sets and their fetch schedule
//! (`key_cache`), the records all workers share through the host's shared data
//! (`shared_keys`), the DPoP replay cache (`replay`), revoked tokens (`revocation`), the
//! verified-token cache (`token_cache`), the refused-token cache (`refusal_cache`) and introspection answers (`introspection`).

pub mod etcd;
pub mod introspection;
pub mod key_cache;
pub mod replay;
pub mod revocation;
pub(crate) mod refusal_cache;
pub mod shared;
pub mod shared_keys;
pub(crate) mod token_cache;
