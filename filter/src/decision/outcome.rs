//! What deciding a request comes to, in the same types from one token's checks up to the
//! worker: a step passes with what it passed with (`Ok`), or it stops (`Stop`), refused
//! or waiting for keys. A refusal carries the policy's `Failure` up unchanged; it becomes
//! the reply (`policy::response::deny`) only when it is sent.

use crate::http::request::HeaderChanges;
use crate::policy::authz::ProviderId;
use crate::policy::dpop::ProofUse;
use crate::policy::response::{Failure, Reply};

/// The verdict for a request: it passes, or it stops.
pub type Decision = Result<Pass, Stop>;

/// A request that passes.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    /// Forward upstream after applying `changes`. In report mode, `reported` carries the
    /// refusal that enforce mode would have sent. `proof`: the DPoP proof the request was
    /// allowed with (and its provider), which the replay cache must accept first.
    /// `verified`: the providers whose tokens passed, listed only for per-provider counters
    /// (`provider_stats`).
    Forward {
        changes: HeaderChanges,
        reported: Option<Box<Refusal>>,
        proof: Option<(ProviderId, ProofUse)>,
        verified: Vec<ProviderId>,
    },
    /// The filter answers the request itself with a document.
    Serve(Reply),
}

/// Why a step, and so the request, did not pass (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Refuse(Refusal),
    /// Keys are needed first: pause the request, fetch, then decide again.
    Keys(NeedKeys),
    /// An opaque token's introspection answer is needed first: pause the request, call
    /// the endpoint (or wait for the call that is pending), then decide again.
    Introspect(NeedIntrospection),
}

impl Stop {
    /// A refusal for `failure`, concerning `provider`.
    pub fn refuse(failure: Failure, provider: Option<ProviderId>) -> Stop {
        Stop::Refuse(Refusal {
            failure,
            provider,
            detail: None,
            scopes: Vec::new(),
            foreign: false,
        })
    }

    /// This stop, for a token its provider does not take (a JWT provider given a token
    /// that is not shaped as a JWS, an introspection provider given one that is).
    pub fn foreign(self) -> Stop {
        match self {
            Stop::Refuse(refusal) => Stop::Refuse(Refusal {
                foreign: true,
                ..refusal
            }),
            other => other,
        }
    }
}

/// A provider's keys are needed before a token can be verified: none are loaded yet, or
/// the token names a `kid` the sets lack and a fetch may bring it (`unknown_kid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedKeys {
    pub provider: ProviderId,
    /// The key sources to fetch (or wait for): bit `i` is source `i` of the provider's
    /// `keys` (a provider with one source: 1).
    pub sources: u8,
    pub unknown_kid: bool,
    /// The tenant whose key set it is, for a provider with `tenants`.
    pub tenant: Option<String>,
}

/// An introspection provider's answer for `token` is needed (`keys::introspection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedIntrospection {
    pub provider: ProviderId,
    /// The token to send; never logged.
    pub token: String,
}

/// A refused request: why, and the provider it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub failure: Failure,
    pub provider: Option<ProviderId>,
    /// Why the request could not be routed, for the log line (fixed text, no request data).
    pub detail: Option<&'static str>,
    /// The scopes the refused requirement asks for, named in a 401 challenge's `scope`
    /// (RFC 6750 section 3; the MCP authorization spec asks resource servers for it).
    pub scopes: Vec<String>,
    /// The token was not of this provider's kind (`Stop::foreign`): among the alternatives
    /// of an `any`, such a refusal is reported only when every one is.
    pub foreign: bool,
}
