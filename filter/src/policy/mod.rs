//! What a request must show: the rules and their matching (`rules`, `template`), the
//! requirements and authorization checks (`authz`), where a token is found (`extract`),
//! sender constraints (`binding`, `dpop`), and the answers to refused requests
//! (`response`, shaped by the operator: `denials`).

pub mod authz;
pub mod binding;
pub mod denials;
pub mod dpop;
pub(crate) mod extract;
pub mod response;
pub(crate) mod rules;
pub(crate) mod template;
pub mod tenants;
