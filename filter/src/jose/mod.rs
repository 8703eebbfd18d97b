//! JOSE primitives: algorithms, base64url, a strict JSON reader, JWS compact parsing, key
//! sets (JWK), signature verification and the JWT claim checks. Imports nothing else of
//! the crate.

pub mod alg;
pub mod base64url;
pub mod claims;
pub(crate) mod ec_point;
pub mod json;
pub mod jwks;
pub mod jws;
pub(crate) mod spki;
pub mod verify;
