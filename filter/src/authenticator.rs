//! The decision for one request: route rule, token, keys, signature, claims,
//! authorization, and the header changes or the denial that follow.

use crate::authz::{Bound, ClaimCheck, Denied, ProviderRequirement, Requirement};
use crate::binding::{self, Connection, NoCertificate};
use crate::claims::ClaimError;
use crate::config::{Config, CorsPreflight, KeySource, Mode, Provider, ProviderId, Unmatched};
use crate::dpop::{DpopMode, ProofUse};
use crate::extract::{self, Extracted, TokenSource};
use crate::jwks::{KeyError, KeySet};
use crate::jws;
use crate::path;
use crate::request::{HeaderChanges, Request};
use crate::response::{Denial, Failure, Served, deny};
use crate::rules::{self, METHOD_OVERRIDE_HEADERS, Route};
use crate::token_cache::{TokenCache, Verified};
use crate::verify::SignatureVerifier;
use serde_json::Value;
use std::cell::RefCell;
use std::rc::Rc;

/// What the host side knows about a provider's remote key set.
pub enum KeyState<'k> {
    /// A key set is loaded. `refetch_allowed` says whether an unknown `kid` may trigger a
    /// fetch now (no fetch within the cooldown).
    Ready {
        set: &'k KeySet,
        refetch_allowed: bool,
    },
    /// No key set yet; a fetch is under way or can start.
    Loading,
    /// No usable key set and the last fetch failed.
    Unavailable { retry_after_s: u64 },
}

/// Key sets fetched by the host side, by provider.
pub trait KeyStore {
    fn state(&self, provider: ProviderId) -> KeyState<'_>;
}

/// A key store that always holds one set, for every provider: for tests, benchmarks and
/// hosts whose keys never change. `refetch_allowed` answers an unknown `kid`.
pub struct FixedKeys {
    pub set: KeySet,
    pub refetch_allowed: bool,
}

impl KeyStore for FixedKeys {
    fn state(&self, _provider: ProviderId) -> KeyState<'_> {
        KeyState::Ready {
            set: &self.set,
            refetch_allowed: self.refetch_allowed,
        }
    }
}

/// The verdict for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward upstream after applying `changes`. In report mode, `reported` carries the
    /// denial that enforce mode would have sent. `proof`: the DPoP proof the request was
    /// allowed with (and its provider), which the replay cache must accept first.
    Allow {
        changes: HeaderChanges,
        reported: Option<Refusal>,
        proof: Option<(ProviderId, ProofUse)>,
    },
    Deny(Refusal),
    /// Keys are needed first: pause the request, fetch, then decide again.
    Pending {
        provider: ProviderId,
        unknown_kid: bool,
    },
    /// The filter answers the request itself with a document.
    Serve(Served),
}

/// A denial with the provider it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub denial: Denial,
    pub provider: Option<ProviderId>,
    /// Why the request could not be routed, for the log line (fixed text, no request data).
    pub detail: Option<&'static str>,
}

/// A token that passed every check for one provider.
struct Passed<'r> {
    provider: ProviderId,
    source: usize,
    payload_b64: &'r str,
    token: Rc<Verified>,
    proof: Option<ProofUse>,
}

/// Why the signature stage did not produce a verified token.
enum Stop {
    Fail(Failure),
    /// No key set yet.
    Loading,
    /// The token's `kid` is not in the set, and a fetch may bring it.
    UnknownKid,
}

fn invalid_token(description: &str) -> Failure {
    Failure::InvalidToken {
        description: description.to_string(),
        expired: false,
    }
}

enum Outcome<'r> {
    /// Passed; empty when it passed anonymously (`allow_missing`).
    Pass(Vec<Passed<'r>>),
    Fail(Failure, Option<ProviderId>),
    Pending {
        provider: ProviderId,
        unknown_kid: bool,
    },
}

/// The description of a refused request that carries a header the filter must read or
/// strip with a value that is not UTF-8.
pub const UNDECODABLE: &str = "Request header value is not valid UTF-8";

pub struct Authenticator<V> {
    pub config: Config,
    verifier: V,
    /// Headers whose value the filter reads or strips: the pseudo-headers, every header a
    /// token may come from, the identity headers, and the method overrides when a rule
    /// depends on the method. A request where one of them is not
    /// UTF-8 is refused, since what it means is unknowable.
    must_decode: Vec<String>,
    /// Verified tokens of this worker (the core is single-threaded per VM).
    cache: RefCell<TokenCache>,
    /// Whether some rule names Envoy routes (only then is the `route_name` property read).
    pub needs_route_name: bool,
    /// Whether some provider reads tokens from a form body.
    reads_bodies: bool,
}

impl<V: SignatureVerifier> Authenticator<V> {
    pub fn new(config: Config, verifier: V) -> Self {
        let cache = RefCell::new(TokenCache::new(config.jwt_cache_size));
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
        let needs_route_name = config.rules.iter().any(|r| !r.matcher.routes.is_empty());
        must_decode.sort();
        must_decode.dedup();
        Authenticator {
            config,
            verifier,
            must_decode,
            cache,
            needs_route_name,
            reads_bodies,
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

    /// Token-cache hits and misses since the last call.
    pub fn take_cache_counts(&self) -> (u64, u64) {
        let mut cache = self.cache.borrow_mut();
        let counts = (cache.hits, cache.misses);
        (cache.hits, cache.misses) = (0, 0);
        counts
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
        if req.undecodable.iter().any(|h| self.must_decode.contains(h)) {
            return self.refused(req, Failure::InvalidRequest(UNDECODABLE.into()), None, None);
        }
        if let Some(m) = &self.config.resource_metadata
            && req.method() == "GET"
            && req.path().split('?').next() == Some(m.path.as_str())
        {
            return Decision::Serve(Served::json(&m.document));
        }
        if self.config.cors_preflight == CorsPreflight::Pass && self.is_preflight(req) {
            return Decision::Allow {
                changes: self.changes(req, &[]),
                reported: None,
                proof: None,
            };
        }
        // Every rule some reading of the request lands on must pass (rules.rs).
        let found = rules::find(
            &self.config.rules,
            self.config.path_parameters,
            req,
            route_name,
        );
        let outcome = match &found {
            Ok(routes) => {
                let allow_unmatched = self.config.unmatched == Unmatched::Allow;
                let checks = routes.iter().filter_map(|route| match route {
                    Route::Rule(rule, captures) => {
                        rule.requires.as_ref().map(|r| Ok((r, captures.as_slice())))
                    }
                    Route::Unmatched if allow_unmatched => None,
                    Route::Unmatched => Some(Err(Failure::AccessDenied)),
                });
                self.evaluate_all(checks, req, connection, now, keys)
            }
            Err(e) => return self.refused(req, Failure::AccessDenied, None, Some(e.message())),
        };
        match outcome {
            Outcome::Pass(verified) => Decision::Allow {
                changes: self.changes(req, &verified),
                reported: None,
                proof: verified
                    .iter()
                    .find_map(|v| Some((v.provider, v.proof.clone()?))),
            },
            Outcome::Pending {
                provider,
                unknown_kid,
            } => Decision::Pending {
                provider,
                unknown_kid,
            },
            Outcome::Fail(failure, provider) => self.refused(req, failure, provider, None),
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

    /// A denial in enforce mode; in report mode, the request goes on with what it would
    /// have been denied for.
    pub fn refused(
        &self,
        req: &Request,
        failure: Failure,
        provider: Option<ProviderId>,
        detail: Option<&'static str>,
    ) -> Decision {
        let mut denial = deny(&self.config.realm, &failure, req);
        if let Some(m) = &self.config.resource_metadata {
            denial.add_resource_metadata(&m.url);
        }
        if let Some(dpop) = provider
            .map(|p| &self.config.provider(p).dpop)
            .filter(|d| d.mode != DpopMode::Disabled)
        {
            let error_in_dpop =
                matches!(failure, Failure::InvalidDpopProof(_)) || binding::uses_dpop_scheme(req);
            denial.add_dpop_challenge(&dpop.algs, error_in_dpop, dpop.mode == DpopMode::Required);
        }
        let refusal = Refusal {
            denial,
            provider,
            detail,
        };
        match self.config.mode {
            Mode::Enforce => Decision::Deny(refusal),
            Mode::Report => Decision::Allow {
                changes: self.changes(req, &[]),
                reported: Some(refusal),
                proof: None,
            },
        }
    }

    /// `captures`: what the matched rule's path template captured.
    fn evaluate<'r>(
        &self,
        requirement: &Requirement,
        captures: &[String],
        req: &'r Request,
        connection: &dyn Connection,
        now: u64,
        keys: &dyn KeyStore,
    ) -> Outcome<'r> {
        match requirement {
            Requirement::Provider(p) => {
                self.evaluate_provider(p, captures, req, connection, now, keys)
            }
            Requirement::Any(list) => {
                let (mut anonymous, mut pending, mut worst) =
                    (false, None, None::<(Failure, Option<ProviderId>)>);
                for r in list {
                    match self.evaluate(r, captures, req, connection, now, keys) {
                        Outcome::Pass(v) if !v.is_empty() => return Outcome::Pass(v),
                        Outcome::Pass(_) => anonymous = true,
                        Outcome::Pending {
                            provider,
                            unknown_kid,
                        } => {
                            pending.get_or_insert(Outcome::Pending {
                                provider,
                                unknown_kid,
                            });
                        }
                        Outcome::Fail(f, p) => {
                            if worst.as_ref().is_none_or(|(w, _)| f.rank() > w.rank()) {
                                worst = Some((f, p));
                            }
                        }
                    }
                }
                if anonymous {
                    Outcome::Pass(Vec::new())
                } else if let Some(pending) = pending {
                    pending
                } else {
                    let (f, p) = worst.unwrap_or((Failure::AccessDenied, None));
                    Outcome::Fail(f, p)
                }
            }
            Requirement::All(list) => self.evaluate_all(
                list.iter().map(|r| Ok((r, captures))),
                req,
                connection,
                now,
                keys,
            ),
        }
    }

    /// Every check (a requirement with its rule's captures) must pass (an `Err` is a
    /// failure already decided); the first failure decides; a pending one waits for keys
    /// unless a later one fails.
    fn evaluate_all<'q, 'r>(
        &self,
        checks: impl IntoIterator<Item = Result<(&'q Requirement, &'q [String]), Failure>>,
        req: &'r Request,
        connection: &dyn Connection,
        now: u64,
        keys: &dyn KeyStore,
    ) -> Outcome<'r> {
        let (mut passed, mut pending): (Vec<Passed>, _) = (Vec::new(), None);
        for check in checks {
            let (requirement, captures) = match check {
                Ok(check) => check,
                Err(failure) => return Outcome::Fail(failure, None),
            };
            match self.evaluate(requirement, captures, req, connection, now, keys) {
                Outcome::Pass(v) => {
                    for p in v {
                        // One token that passed two checks changes the headers once.
                        if !passed
                            .iter()
                            .any(|q| q.provider == p.provider && q.source == p.source)
                        {
                            passed.push(p);
                        }
                    }
                }
                fail @ Outcome::Fail(..) => return fail,
                p @ Outcome::Pending { .. } => {
                    pending.get_or_insert(p);
                }
            }
        }
        pending.unwrap_or(Outcome::Pass(passed))
    }

    fn evaluate_provider<'r>(
        &self,
        requirement: &ProviderRequirement,
        captures: &[String],
        req: &'r Request,
        connection: &dyn Connection,
        now: u64,
        keys: &dyn KeyStore,
    ) -> Outcome<'r> {
        let index = requirement.provider;
        let provider = self.config.provider(index);
        let fail = |f: Failure| Outcome::Fail(f, Some(index));

        let (token, source, scheme) =
            match extract::extract(req, &provider.token_sources, self.config.max_token_bytes) {
                Extracted::Found {
                    token,
                    source,
                    scheme,
                } => (token, source, scheme),
                Extracted::Missing if requirement.allow_missing => return Outcome::Pass(Vec::new()),
                Extracted::Missing => return fail(Failure::Missing),
                Extracted::Invalid(why) => return fail(Failure::InvalidRequest(why.to_string())),
                Extracted::TooLarge => return fail(invalid_token("Token too large")),
            };
        if let Err(failure) = binding::check_request(scheme, req, &provider.dpop) {
            return fail(failure);
        }
        let verified = match self.verify_token(index, token, now, keys) {
            Ok(verified) => verified,
            Err(Stop::Fail(failure)) => return fail(failure),
            Err(Stop::Loading) => {
                return Outcome::Pending {
                    provider: index,
                    unknown_kid: false,
                };
            }
            Err(Stop::UnknownKid) => {
                return Outcome::Pending {
                    provider: index,
                    unknown_kid: true,
                };
            }
        };
        if let Err(e) = provider.claims.check(
            verified.typ.as_deref(),
            &verified.claims,
            now,
            requirement.audiences.as_deref(),
        ) {
            return fail(Failure::InvalidToken {
                description: e.message(),
                expired: e == ClaimError::Expired,
            });
        }
        let proof = match binding::check_token(
            &verified.claims,
            token,
            scheme,
            req,
            &provider.dpop,
            provider.mtls,
            connection,
            now,
            self.config.max_token_bytes,
            &self.verifier,
        ) {
            Ok(proof) => proof,
            Err(failure) => return fail(failure),
        };
        let bound = Bound {
            request: req,
            captures,
        };
        if let Err(denied) = requirement.authorization.check(&verified.claims, bound) {
            return fail(match denied {
                Denied::Scope(scopes) => Failure::InsufficientScope {
                    description: "Insufficient Scope".into(),
                    scopes: Some(scopes),
                },
                Denied::Claim(description) => Failure::InsufficientScope {
                    description,
                    scopes: None,
                },
            });
        }
        Outcome::Pass(vec![Passed {
            provider: index,
            source,
            payload_b64: token.split('.').nth(1).unwrap_or_default(),
            token: verified,
            proof,
        }])
    }

    /// The format and signature stages for `token`, or their cached result: the token is
    /// a well-formed JWS for this provider, signed by a key of its current key set.
    fn verify_token(
        &self,
        index: ProviderId,
        token: &str,
        now: u64,
        keys: &dyn KeyStore,
    ) -> Result<Rc<Verified>, Stop> {
        let provider = self.config.provider(index);
        let state = key_state(provider, index, keys);
        let cached = self.cache.borrow_mut().get(index, token, now);
        if let Some(hit) = cached {
            let key_kept = match &state {
                KeyState::Ready { set, .. } => set
                    .select(hit.kid.as_deref(), hit.alg)
                    .is_ok_and(|k| Rc::ptr_eq(&k.material, &hit.key) || k.material == hit.key),
                _ => false,
            };
            if key_kept {
                self.cache.borrow_mut().count(true);
                return Ok(hit);
            }
            self.cache.borrow_mut().remove(token);
        }
        self.cache.borrow_mut().count(false);

        let jws = jws::parse(token).map_err(|e| Stop::Fail(invalid_token(e.0)))?;
        if !provider.algorithms.contains(&jws.alg) {
            return Err(Stop::Fail(invalid_token("Unexpected 'alg' value")));
        }
        let claims = jws.claims().map_err(|e| Stop::Fail(invalid_token(e.0)))?;
        provider
            .claims
            .check_issuer(&claims)
            .map_err(|e| Stop::Fail(invalid_token(&e.message())))?;
        let (set, refetch_allowed) = match state {
            KeyState::Ready {
                set,
                refetch_allowed,
            } => (set, refetch_allowed),
            KeyState::Loading => return Err(Stop::Loading),
            KeyState::Unavailable { retry_after_s } => {
                return Err(Stop::Fail(Failure::Unavailable { retry_after_s }));
            }
        };
        let key = match set.select(jws.kid.as_deref(), jws.alg) {
            Ok(key) => key,
            Err(KeyError::UnknownKid) if refetch_allowed => return Err(Stop::UnknownKid),
            Err(KeyError::UnknownKid | KeyError::NoMatch) => {
                return Err(Stop::Fail(invalid_token(
                    "no applicable key found in the JSON Web Key Set",
                )));
            }
            Err(KeyError::Ambiguous) => {
                return Err(Stop::Fail(invalid_token(
                    "multiple matching keys found in the JSON Web Key Set",
                )));
            }
        };
        if !self
            .verifier
            .verify(jws.alg, key, jws.signing_input.as_bytes(), &jws.signature)
        {
            return Err(Stop::Fail(invalid_token("signature verification failed")));
        }
        // Kept while `exp` (with the clock skew) may still pass; the claims are checked anyway.
        let skew = provider.claims.clock_skew_s as f64;
        let evict_at = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map(|exp| exp + skew);
        let verified = Rc::new(Verified {
            alg: jws.alg,
            kid: jws.kid,
            typ: jws.typ,
            key: Rc::clone(&key.material),
            evict_at: evict_at.unwrap_or(f64::NEG_INFINITY),
            claims,
        });
        if evict_at.is_some_and(|at| at > now as f64) {
            self.cache
                .borrow_mut()
                .insert(index, token, Rc::clone(&verified));
        }
        Ok(verified)
    }

    /// Header changes for a request that goes upstream: identity headers are always
    /// stripped first; verified tokens add theirs and are removed unless forwarded.
    fn changes(&self, req: &Request, verified: &[Passed]) -> HeaderChanges {
        // Only headers the request carries need removing (each removal is a host call).
        let mut changes = HeaderChanges {
            remove: self
                .config
                .identity_headers
                .iter()
                .filter(|h| req.has_header(h))
                .cloned()
                .collect(),
            ..HeaderChanges::default()
        };
        for v in verified {
            let provider: &Provider = self.config.provider(v.provider);
            if !provider.forward {
                let removal = extract::removal(req, &provider.token_sources[v.source]);
                changes.remove.extend(removal.remove);
                changes.set.extend(removal.set);
                changes.body = changes.body.or(removal.body);
                // The proof only ever meant something with the token.
                if v.proof.is_some() {
                    changes.remove.push("dpop".to_string());
                }
            }
            if let Some(header) = &provider.forward_payload_header {
                changes
                    .set
                    .push((header.clone(), v.payload_b64.to_string()));
            }
            for (path, header) in &provider.claim_to_headers {
                if let Some(value) = path.lookup(&v.token.claims).and_then(header_value) {
                    changes.set.push((header.clone(), value));
                }
            }
            for (path, property) in &provider.claim_to_properties {
                if let Some(value) = path.lookup(&v.token.claims).and_then(header_value) {
                    changes.properties.push((property.clone(), value));
                }
            }
        }
        changes
    }
}

fn key_state<'k>(
    provider: &'k Provider,
    index: ProviderId,
    keys: &'k dyn KeyStore,
) -> KeyState<'k> {
    match &provider.keys {
        KeySource::Local(set) => KeyState::Ready {
            set,
            refetch_allowed: false,
        },
        KeySource::Remote(_) | KeySource::Discovery(_) => keys.state(index),
    }
}

/// Most bytes of a claim written into a header.
const MAX_HEADER_VALUE: usize = 4096;

/// A claim as a header (or property) value: strings as they are, numbers and booleans printed, arrays
/// of those joined with `,`. Objects, and values with control characters or too long,
/// are not written.
fn header_value(claim: &Value) -> Option<String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let value = match claim {
        Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        other => scalar(other)?,
    };
    let safe = value.len() <= MAX_HEADER_VALUE && !value.chars().any(char::is_control);
    safe.then_some(value)
}

#[cfg(test)]
mod tests;
