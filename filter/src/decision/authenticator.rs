//! The decision for one request: the rules it lands on, their requirements
//! (`requirements.rs`), each provider's token (`token.rs`: keys, signature, claims,
//! authorization), and the header changes or the denial that follow.

use crate::config::{
    Config, CorsPreflight, Mode, Provider, ProviderId, ResourceMetadata, Unmatched,
    same_upstream_name,
};
pub use crate::decision::outcome::{Decision, NeedKeys, Pass, Refusal, Stop};
use crate::http::authority;
use crate::http::path;
use crate::http::request::METHOD_OVERRIDE_HEADERS;
use crate::http::request::{HeaderChanges, Request};
use crate::http::spelling::length_bit;
use crate::jose::verify::SignatureVerifier;
pub use crate::keys::key_cache::{FixedKeys, KeyState, KeyStore};
use crate::policy::authz::{ClaimCheck, ProviderRequirement, Requirement};
use crate::policy::binding::{self, Connection, NoCertificate};
use crate::policy::denials::failure_record;
use crate::policy::dpop::DpopMode;
use crate::policy::extract::{self, TokenSource};
use crate::policy::response::{Failure, METADATA_DETAILS, Reply, deny};
use crate::policy::rules::{self, Route, RouteError};
use serde_json::Value;
pub use token::PushedToken;
use token::{Asked, Passed, Tokens};

/// The description of a refused request that carries a header the filter must read or
/// strip with a value that is not UTF-8.
pub const UNDECODABLE: &str = "Request header value is not valid UTF-8";

pub struct Authenticator<V> {
    pub config: Config,
    tokens: Tokens<V>,
    /// Headers whose value the filter reads or strips: the pseudo-headers, every header a
    /// token may come from, the identity headers, and the method overrides when a rule
    /// depends on the method. A request where one of them is not
    /// UTF-8 is refused, since what it means is unknowable.
    must_decode: Vec<String>,
    /// Whether some rule names Envoy routes (only then is the `route_name` property read).
    pub needs_route_name: bool,
    /// Whether some provider reads tokens from a form body.
    reads_bodies: bool,
    /// The headers some provider reads with an authentication scheme (`authorization`).
    scheme_headers: Vec<String>,
    /// The lengths of the identity headers' names, as bits (bit 63: 63 bytes or more), so
    /// that most request headers are passed over without comparing a byte (`is_identity`).
    identity_lengths: u64,
}

impl<V: SignatureVerifier> Authenticator<V> {
    pub fn new(config: Config, verifier: V) -> Self {
        let mut must_decode: Vec<String> = [":method", ":path", ":authority"]
            .iter()
            .map(|h| h.to_string())
            .chain(config.identity_headers.iter().cloned())
            .chain(config.providers.iter().flat_map(|p| {
                p.token_sources.iter().filter_map(|s| match s {
                    TokenSource::Header { name, .. } => Some(name.clone()),
                    TokenSource::Cookie(_) => Some("cookie".to_string()),
                    // The query is part of `:path`.
                    TokenSource::Query(_) => None,
                    // What says whether the body is a form (`content-length` is rewritten).
                    TokenSource::Body(_) => Some("content-type".to_string()),
                })
            }))
            .collect();
        let reads_bodies = config.providers.iter().any(|p| {
            p.token_sources
                .iter()
                .any(|s| matches!(s, TokenSource::Body(_)))
        });
        if reads_bodies {
            must_decode.extend(["content-encoding", "content-length"].map(String::from));
        }
        // A method override the filter cannot read could name any method (and make a
        // preflight that passes unchecked another request).
        if config.cors_preflight == CorsPreflight::Pass
            || config.rules.iter().any(|r| !r.matcher.methods.is_empty())
        {
            must_decode.extend(METHOD_OVERRIDE_HEADERS.iter().map(|h| h.to_string()));
        }
        // A header that a claim must equal.
        must_decode.extend(
            config
                .rules
                .iter()
                .filter_map(|r| r.requires.as_ref())
                .flat_map(Requirement::claim_checks)
                .filter_map(|check| match check {
                    ClaimCheck::EqualsHeader(_, header) => Some(header.clone()),
                    _ => None,
                }),
        );
        // A proof the filter cannot read could be one sent with the wrong scheme.
        if config
            .providers
            .iter()
            .any(|p| p.dpop.mode != DpopMode::Disabled)
        {
            must_decode.push("dpop".to_string());
        }
        // A `host` header is read next to `:authority` where the authority is read: rules
        // with hosts, and a DPoP proof's `htu` compared with `:authority`.
        if config.rules.iter().any(|r| !r.matcher.hosts.is_empty())
            || config
                .providers
                .iter()
                .any(|p| p.dpop.mode != DpopMode::Disabled && p.dpop.origin.is_none())
        {
            must_decode.push("host".to_string());
        }
        let needs_route_name = config.rules.iter().any(|r| !r.matcher.routes.is_empty());
        let mut scheme_headers: Vec<String> = config
            .providers
            .iter()
            .flat_map(|p| &p.token_sources)
            .filter_map(|s| s.scheme().map(|(name, _)| name.to_string()))
            .collect();
        scheme_headers.sort();
        scheme_headers.dedup();
        let identity_lengths = config
            .identity_headers
            .iter()
            .fold(0, |bits, h| bits | length_bit(h.len()));
        must_decode.sort();
        must_decode.dedup();
        Authenticator {
            tokens: Tokens::new(verifier, config.jwt_cache_size, config.max_token_bytes),
            config,
            must_decode,
            needs_route_name,
            reads_bodies,
            scheme_headers,
            identity_lengths,
        }
    }

    /// Whether some provider reads tokens from form bodies.
    pub fn reads_bodies(&self) -> bool {
        self.reads_bodies
    }

    /// Whether `req` must be decided with its body (`Request::set_form_body`): it may carry
    /// a form body (`extract::may_carry_form_body`) and a rule it lands on requires a
    /// provider that reads tokens from one. Requests the rules refuse outright are decided
    /// without it.
    pub fn wants_body(&self, req: &Request, route_name: Option<&str>) -> bool {
        if !self.reads_bodies || !extract::may_carry_form_body(req) {
            return false;
        }
        let reads_body = |p: ProviderId| {
            self.config
                .provider(p)
                .token_sources
                .iter()
                .any(|s| matches!(s, TokenSource::Body(_)))
        };
        let found = rules::find(
            &self.config.rules,
            self.config.path_parameters,
            req,
            route_name,
        );
        found.is_ok_and(|routes| {
            routes.iter().any(|route| match route {
                Route::Rule(rule, _) => rule
                    .requires
                    .as_ref()
                    .is_some_and(|r| r.names_provider(&reads_body)),
                Route::Unmatched => false,
            })
        })
    }

    /// A token pushed to `provider`'s revocation receiver, verified with its keys: its
    /// claims (`token::verify_pushed`).
    pub fn verify_pushed(
        &self,
        provider: ProviderId,
        token: &str,
        now: u64,
        keys: &dyn KeyStore,
    ) -> Result<std::rc::Rc<crate::keys::token_cache::Verified>, PushedToken> {
        let p = self.config.provider(provider);
        self.tokens.verify_pushed(provider, p, token, now, keys)
    }

    /// Token-cache hits and misses since the last call.
    pub fn take_cache_counts(&self) -> (u64, u64) {
        self.tokens.take_cache_counts()
    }

    /// Decides `req` at unix time `now` (seconds), on no named Envoy route and a connection
    /// without client certificate.
    pub fn decide(&self, req: &Request, now: u64, keys: &dyn KeyStore) -> Decision {
        self.decide_on_route(req, None, &NoCertificate, now, keys)
    }

    /// Decides `req` at unix time `now` (seconds) on the Envoy route named `route_name`
    /// (`None` where the host does not tell; rules that name routes then never match),
    /// received on `connection`.
    pub fn decide_on_route(
        &self,
        req: &Request,
        route_name: Option<&str>,
        connection: &dyn Connection,
        now: u64,
        keys: &dyn KeyStore,
    ) -> Decision {
        if req
            .undecodable
            .iter()
            .any(|h| self.must_decode_header(h) || self.is_identity(h))
        {
            let failure = Failure::InvalidRequest(UNDECODABLE.into());
            return self.refused(req, Stop::refuse(failure, None));
        }
        if let Some(m) = self.metadata_served(req) {
            return Ok(Pass::Serve(Reply::json(&m.document, METADATA_DETAILS)));
        }
        if self.config.cors_preflight == CorsPreflight::Pass && self.is_preflight(req) {
            return Ok(Pass::Forward {
                changes: self.changes(req, &[]),
                reported: None,
                proof: None,
                verified: Vec::new(),
            });
        }
        // Every rule some reading of the request lands on must pass (rules.rs).
        let found = rules::find(
            &self.config.rules,
            self.config.path_parameters,
            req,
            route_name,
        );
        let checked = match &found {
            Ok(routes) => {
                let allow_unmatched = self.config.unmatched == Unmatched::Allow;
                let checks = routes.iter().filter_map(|route| match route {
                    Route::Rule(rule, captures) => {
                        rule.requires.as_ref().map(|r| Ok((r, captures.as_slice())))
                    }
                    Route::Unmatched if allow_unmatched => None,
                    Route::Unmatched => Some(Err(Failure::AccessDenied)),
                });
                let asked = Asked {
                    req,
                    connection,
                    now,
                    keys,
                };
                let check = |p: &ProviderRequirement, captures: &[String]| {
                    let provider = self.config.provider(p.provider);
                    self.tokens.check(provider, p, captures, &asked)
                };
                requirements::evaluate_all(checks, &check)
            }
            // An authority that is not one host, where rules name hosts: 400.
            Err(e) => {
                let failure = match e {
                    RouteError::Authority(e) => Failure::InvalidRequest(e.description().into()),
                    _ => Failure::AccessDenied,
                };
                return self.refused(
                    req,
                    Stop::Refuse(Refusal {
                        failure,
                        provider: None,
                        detail: Some(e.message()),
                        scopes: Vec::new(),
                        foreign: false,
                    }),
                );
            }
        };
        match checked {
            Ok(verified) => Ok(Pass::Forward {
                changes: {
                    let mut changes = self.changes(req, &verified);
                    if let Ok(routes) = &found {
                        self.strip_other_schemes(req, routes, &mut changes);
                    }
                    changes
                },
                reported: None,
                proof: verified
                    .iter()
                    .find_map(|v| Some((v.provider, v.proof.clone()?))),
                verified: match self.config.provider_stats {
                    Some(_) => verified.iter().map(|v| v.provider).collect(),
                    None => Vec::new(),
                },
            }),
            Err(stop) => self.refused(req, stop),
        }
    }

    /// Strips the scheme headers (`Authorization`) that carry a scheme no provider of the
    /// rules `routes` reads there (`Basic` where `Bearer` is read): such a credential is
    /// no token to the filter, so the upstream must not act on it (a stack that reads
    /// `JWT <t>` or `Token <t>` would take an unverified token). Public routes keep them.
    fn strip_other_schemes(&self, req: &Request, routes: &[Route], changes: &mut HeaderChanges) {
        for header in &self.scheme_headers {
            // Most often the verified token's header is removed already.
            if changes.remove.iter().any(|h| h == header) {
                continue;
            }
            let Some((spelling, value)) = req.header_spellings(header).next() else {
                continue;
            };
            if changes.remove.iter().any(|h| h == spelling) {
                continue;
            }
            let mut schemes: Vec<&str> = Vec::new();
            let mut dpop = false;
            for (index, provider) in self.config.providers.iter().enumerate() {
                let named = routes.iter().any(|route| match route {
                    Route::Rule(rule, _) => rule
                        .requires
                        .as_ref()
                        .is_some_and(|r| r.names_provider(&|p| p == ProviderId(index))),
                    Route::Unmatched => false,
                });
                if !named {
                    continue;
                }
                for source in &provider.token_sources {
                    if let Some((name, scheme)) = source.scheme()
                        && name == header
                    {
                        schemes.push(scheme);
                        dpop |= source.reads_dpop();
                    }
                }
            }
            if !schemes.is_empty() && extract::is_other_scheme(value, &schemes, dpop) {
                changes.remove.push(spelling.to_string());
            }
        }
    }

    /// A CORS preflight: `OPTIONS` (and no method override), with `Origin` and
    /// `Access-Control-Request-Method`, on a path the filter can read.
    fn is_preflight(&self, req: &Request) -> bool {
        let has = |name: &str| req.header_values(name).next().is_some();
        has("origin")
            && has("access-control-request-method")
            && rules::only_method(req, "OPTIONS")
            && path::read(req.path(), self.config.path_parameters).is_ok()
    }

    /// A refusal stands in enforce mode; in report mode, the request goes on with what it
    /// would have been refused for. Waiting for keys stays waiting.
    pub fn refused(&self, req: &Request, stop: Stop) -> Decision {
        match (stop, self.config.mode) {
            (Stop::Refuse(refusal), Mode::Report) => Ok(Pass::Forward {
                changes: {
                    let mut changes = self.changes(req, &[]);
                    changes
                        .properties
                        .extend(self.failure_property(&refusal, refusal.failure.status()));
                    changes
                },
                reported: Some(Box::new(refusal)),
                proof: None,
                verified: Vec::new(),
            }),
            (stop, _) => Err(stop),
        }
    }

    /// The `failure_property` record of `refusal`, answered with `status`, if configured.
    fn failure_property(&self, refusal: &Refusal, status: u16) -> Option<(String, String)> {
        let name = self.config.failure_property.as_ref()?;
        let provider = refusal
            .provider
            .map(|p| self.config.provider(p).name.as_str());
        Some((
            name.clone(),
            failure_record(&refusal.failure, status, provider),
        ))
    }

    /// The RFC 9728 document `req` asks for: a `GET` on its path, on its host (read only
    /// when some document is served at the request's path).
    fn metadata_served(&self, req: &Request) -> Option<&ResourceMetadata> {
        let path = req.path().split('?').next()?;
        if req.method() != "GET" || !self.config.resource_metadata.iter().any(|m| m.path == path) {
            return None;
        }
        let to = authority::of_request(req).ok();
        self.config
            .resource_metadata
            .iter()
            .find(|m| m.path == path && m.on_host(to.as_ref()))
    }

    /// The RFC 9728 document a 401 to `req` names: the one document, or the list's document
    /// for the request's host whose resource is the longest prefix of its path (none when
    /// no resource of that host covers it, or the authority does not read as one host).
    fn metadata_named(&self, req: &Request) -> Option<&ResourceMetadata> {
        let documents = &self.config.resource_metadata;
        if documents.iter().all(|m| m.authority.is_none()) {
            return documents.first();
        }
        let to = authority::of_request(req).ok();
        let path = req.path().split('?').next().unwrap_or_default();
        documents
            .iter()
            .filter(|m| m.on_host(to.as_ref()) && m.covers(path))
            .max_by_key(|m| m.prefix.len())
    }

    /// The reply that refuses `req` for `refusal`: the policy's answer for its failure,
    /// with the resource metadata and the DPoP challenge the configuration adds, in the
    /// shape of `denials`, with the `failure_property` record.
    pub fn reply(&self, req: &Request, refusal: &Refusal) -> Reply {
        let failure = &refusal.failure;
        let mut reply = deny(&self.config.realm, failure, req);
        reply.add_scope(&refusal.scopes);
        if let Some(m) = self.metadata_named(req) {
            reply.add_resource_metadata(&m.url);
        }
        if let Some(dpop) = refusal
            .provider
            .map(|p| &self.config.provider(p).dpop)
            .filter(|d| d.mode != DpopMode::Disabled)
        {
            let error_in_dpop = matches!(
                failure,
                Failure::InvalidDpopProof(_) | Failure::UseDpopNonce { .. }
            ) || binding::uses_dpop_scheme(req);
            reply.add_dpop_challenge(&dpop.algs, error_in_dpop, dpop.mode == DpopMode::Required);
        }
        if let Some(denials) = &self.config.denials {
            denials.shape(&mut reply, failure, &self.config.realm, req);
        }
        reply
            .properties
            .extend(self.failure_property(refusal, reply.status));
        reply
    }

    /// Whether header `name` (lower-case) is an identity header to some upstream: the
    /// filter's own spelling, or one that folds into it (`X_User_Id` for `x-user-id`).
    /// Pseudo-headers are the host's, never an identity.
    /// Whether a header whose value is not UTF-8 is one the filter reads: a name of
    /// `must_decode`, under any spelling an upstream folds into it.
    fn must_decode_header(&self, name: &str) -> bool {
        self.must_decode.iter().any(|m| same_upstream_name(m, name))
    }

    fn is_identity(&self, name: &str) -> bool {
        self.identity_lengths & length_bit(name.len()) != 0
            && self
                .config
                .identity_headers
                .iter()
                .any(|id| same_upstream_name(id, name))
    }

    /// The identity headers the request carries, by the names it carries them under (the
    /// host removes a header by its exact name), each once. One pass over the request's
    /// headers; nothing is allocated when none is there.
    fn spoofed_identity(&self, req: &Request) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        if self.identity_lengths == 0 {
            return found;
        }
        let names = req
            .headers()
            .map(|(name, _)| name)
            .chain(req.undecodable.iter().map(String::as_str));
        for name in names {
            if self.is_identity(name) && !found.iter().any(|f| f == name) {
                found.push(name.to_string());
            }
        }
        found
    }

    /// Header changes for a request that goes upstream: identity headers are always
    /// stripped first, in every spelling; verified tokens add theirs and are removed
    /// unless forwarded.
    fn changes(&self, req: &Request, verified: &[Passed]) -> HeaderChanges {
        // Only headers the request carries need removing (each removal is a host call).
        let mut changes = HeaderChanges {
            remove: self.spoofed_identity(req),
            ..HeaderChanges::default()
        };
        for v in verified {
            let provider: &Provider = self.config.provider(v.provider);
            if !provider.forward {
                // Always there: `extract` found the token at `v.source` in these sources.
                let removal = (provider.token_sources.get(v.source))
                    .map(|source| extract::removal(req, source, v.header))
                    .unwrap_or_default();
                changes.remove.extend(removal.remove);
                changes.set.extend(removal.set);
                changes.body = changes.body.or(removal.body);
                // The proof only ever meant something with the token.
                if v.proof.is_some() {
                    changes.remove.push("dpop".to_string());
                }
            }
            // The proof's server nonce has rolled: the answer carries the current one.
            if let Some(nonce) = v.proof.as_ref().and_then(|p| p.nonce.clone()) {
                changes.response.push(("dpop-nonce".to_string(), nonce));
            }
            if let Some(header) = &provider.forward_payload_header {
                changes
                    .set
                    .push((header.clone(), v.payload_b64.to_string()));
            }
            for (path, header) in &provider.claim_to_headers {
                if let Some(value) = path.lookup(v.token.claims()).and_then(header_value) {
                    changes.set.push((header.clone(), value));
                }
            }
            for (path, property) in &provider.claim_to_properties {
                if let Some(value) = path.lookup(v.token.claims()).and_then(header_value) {
                    changes.properties.push((property.clone(), value));
                }
            }
        }
        if !verified.is_empty()
            && (self.config.provider_property.is_some() || self.config.provider_header.is_some())
        {
            let mut names: Vec<&str> = Vec::with_capacity(verified.len());
            for v in verified {
                let name = self.config.provider(v.provider).name.as_str();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            let names = names.join(",");
            if let Some(header) = &self.config.provider_header {
                changes.set.push((header.clone(), names.clone()));
            }
            if let Some(property) = &self.config.provider_property {
                changes.properties.push((property.clone(), names));
            }
        }
        changes
    }
}

/// Most bytes of a claim written into a header.
const MAX_HEADER_VALUE: usize = 4096;

/// A claim as a header (or property) value: strings as they are, numbers and booleans
/// printed, arrays of those joined with `,`. Objects, and values with control characters
/// or too long, are not written.
///
/// An array is written only when the joined list reads back as the same elements in every
/// list parser (RFC 9110 section 5.6.1 trims whitespace around elements and drops empty
/// ones; some parsers honour quoted strings): each element is non-empty, has no `,` and no
/// `"`, and neither starts nor ends with whitespace. Otherwise `["user", "admin,root"]`
/// and `["user", "admin", "root"]` would both arrive as `user,admin,root`, and `["a", ""]`
/// as `["a"]`; such an array is not written at all (the header is absent upstream, as for
/// a missing claim). A string claim is written as it is, commas included.
fn header_value(claim: &Value) -> Option<String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let list_element = |v: &Value| {
        scalar(v).filter(|e| {
            !e.is_empty()
                && !e.contains([',', '"'])
                && !e.starts_with(char::is_whitespace)
                && !e.ends_with(char::is_whitespace)
        })
    };
    let value = match claim {
        Value::Array(items) => items
            .iter()
            .map(list_element)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        other => scalar(other)?,
    };
    let safe = value.len() <= MAX_HEADER_VALUE && !value.chars().any(char::is_control);
    safe.then_some(value)
}

mod requirements;
#[cfg(test)]
#[allow(clippy::string_slice, clippy::unreachable, reason = "test code")]
mod tests;
mod token;
